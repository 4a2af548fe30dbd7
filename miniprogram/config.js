// One place to point the mini-program at your backend.
// Base library minimum (set it in 微信公众平台 → 设置 → 基础库最低版本设置): 2.23.0.
module.exports = {
  // 'sse'           : wx.request streaming to your custom domain (enableChunked: base library ≥ 2.20.2)
  // 'websocket'     : wx.cloud.connectContainer (base library ≥ 2.23.0)
  // 'callContainer' : wx.cloud.callContainer, no streaming: send, then poll (base library ≥ 2.23.0)
  transport: 'websocket',
  // Custom domain bound to the Cloud Run service (needed for 'sse'; must be a 合法域名).
  baseUrl: 'https://api.example.com',
  // Cloud Run environment id and service name (for 'websocket' and 'callContainer').
  cloudEnv: 'prod-xxxxxxxx',
  service: 'companion-backend',
  // How often a non-streaming reply is polled, in milliseconds.
  pollIntervalMs: 1000,
  // WebSocket heartbeat, and the silence after which the socket counts as dead.
  heartbeatMs: 15000,
  socketIdleMs: 45000,
  // Crisis hotline the crisis reply mentions (tappable in the chat).
  hotline: '12356'
};
