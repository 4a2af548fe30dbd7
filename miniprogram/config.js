// One place to point the mini-program at your backend.
module.exports = {
  // 'sse'           : wx.request streaming to your custom domain (base library ≥ 2.20.1)
  // 'websocket'     : wx.cloud.connectContainer (base library ≥ 2.21.1)
  // 'callContainer' : wx.cloud.callContainer, no streaming: send, then poll (15 s cap)
  transport: 'websocket',
  // Custom domain bound to the Cloud Run service (needed for 'sse'; must be a 合法域名).
  baseUrl: 'https://api.example.com',
  // Cloud Run environment id and service name (for 'websocket' and 'callContainer').
  cloudEnv: 'prod-xxxxxxxx',
  service: 'companion-backend',
  // How often a non-streaming reply is polled, in milliseconds.
  pollIntervalMs: 1000
};
