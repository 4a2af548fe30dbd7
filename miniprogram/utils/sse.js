// Server-sent events from ArrayBuffer chunks (wx.request onChunkReceived).
// Handles characters and lines split across chunks, LF and CRLF, comments, multi-line data.
var Utf8Decoder = require('./utf8.js').Utf8Decoder;

function SseDecoder() {
  this.utf8 = new Utf8Decoder();
  this.buffer = '';
  this.eventName = '';
  this.dataLines = [];
}

// Returns the events completed by this chunk: [{ event, data }] (data as text).
SseDecoder.prototype.push = function (chunk) {
  this.buffer += this.utf8.decode(chunk);
  var events = [];
  var newline;
  while ((newline = this.buffer.indexOf('\n')) !== -1) {
    var line = this.buffer.slice(0, newline);
    this.buffer = this.buffer.slice(newline + 1);
    if (line.charAt(line.length - 1) === '\r') line = line.slice(0, -1);
    var event = this.takeLine(line);
    if (event) events.push(event);
  }
  return events;
};

SseDecoder.prototype.takeLine = function (line) {
  if (line === '') {
    if (!this.dataLines.length) {
      this.eventName = '';
      return null;
    }
    var event = { event: this.eventName || 'message', data: this.dataLines.join('\n') };
    this.eventName = '';
    this.dataLines = [];
    return event;
  }
  if (line.charAt(0) === ':') return null; // a comment (keepalive)
  var colon = line.indexOf(':');
  var field = colon === -1 ? line : line.slice(0, colon);
  var value = colon === -1 ? '' : line.slice(colon + 1);
  if (value.charAt(0) === ' ') value = value.slice(1);
  if (field === 'data') this.dataLines.push(value);
  else if (field === 'event') this.eventName = value;
  return null;
};

module.exports = { SseDecoder: SseDecoder };
