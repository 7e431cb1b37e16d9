// Unicode Normalization Form C (UAX #15), for the NFC normalizer.
#pragma once

#include <string>
#include <string_view>

namespace gptq::tok {

// Canonical decomposition, canonical ordering, then canonical composition.
// Invalid UTF-8 bytes are copied through and act as starters (block composition).
std::string nfc(std::string_view text);

}  // namespace gptq::tok
