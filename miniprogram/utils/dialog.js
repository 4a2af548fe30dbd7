// wx.showModal as a Promise: resolves { confirm, content? }; a dialog that fails to open
// counts as "not confirmed".

/**
 * @param {WechatMiniprogram.ShowModalOption} options
 * @returns {Promise<{confirm: boolean, content?: string}>}
 */
function ask(options) {
  return new Promise(function (resolve) {
    wx.showModal(Object.assign({}, options, {
      success: function (res) { resolve(res); },
      fail: function () { resolve({ confirm: false }); }
    }));
  });
}

module.exports = { ask: ask };
