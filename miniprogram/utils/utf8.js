// Incremental UTF-8 decoding without TextDecoder (absent in mini-program runtimes).
// Bytes of a character split across chunks are kept until the rest arrives.

function Utf8Decoder() {
  this.pending = [];
}

// Length of the sequence a lead byte starts (0 for a stray continuation byte).
function sequenceLength(byte) {
  if (byte < 0x80) return 1;
  if (byte >= 0xf0 && byte <= 0xf4) return 4;
  if (byte >= 0xe0) return 3;
  if (byte >= 0xc2 && byte < 0xe0) return 2;
  return 0;
}

// Decodes `chunk` (ArrayBuffer or Uint8Array) and returns the complete characters.
Utf8Decoder.prototype.decode = function (chunk) {
  var input = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
  var bytes = this.pending.length ? this.pending.concat(Array.prototype.slice.call(input)) : input;
  var out = '';
  var codes = [];
  var i = 0;
  while (i < bytes.length) {
    var lead = bytes[i];
    var length = sequenceLength(lead);
    if (length === 0) {
      codes.push(0xfffd);
      i += 1;
      continue;
    }
    if (i + length > bytes.length) break; // the rest of this character is in a later chunk
    var code;
    if (length === 1) {
      code = lead;
    } else if (length === 2) {
      code = ((lead & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
    } else if (length === 3) {
      code = ((lead & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
    } else {
      code = ((lead & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f);
    }
    if (code > 0xffff) {
      code -= 0x10000;
      codes.push(0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff));
    } else {
      codes.push(code);
    }
    i += length;
    if (codes.length > 4096) {
      out += String.fromCharCode.apply(null, codes);
      codes = [];
    }
  }
  out += String.fromCharCode.apply(null, codes);
  this.pending = Array.prototype.slice.call(bytes, i);
  return out;
};

module.exports = { Utf8Decoder: Utf8Decoder };
