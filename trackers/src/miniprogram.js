// The WeChat mini-program platform: wx storage and wx.request, device context from
// wx.getSystemInfoSync, automatic page views by wrapping App() and Page() when this file is
// required (require it at the top of app.js, before App() runs).

var system = null, appVersion;
var current = { route: null, query: {}, referrer: null };
var launchCampaign = null;

function systemInfo() {
  if (!system) {
    try { system = wx.getSystemInfoSync() || {}; } catch (e) { system = {}; }
    // the mini program's own version (set for trial and release builds only)
    try { appVersion = wx.getAccountInfoSync().miniProgram.version || undefined; } catch (e) { /* old base library */ }
  }
  return system;
}

function queryString(query) {
  var parts = [];
  for (var k in query) parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(query[k]));
  return parts.join('&');
}

function pageUrl() {
  var qs = queryString(current.query || {});
  return current.route ? current.route + (qs ? '?' + qs : '') : null;
}

var platform = {
  storage: {
    get: function (k) { var v = wx.getStorageSync(k); return v === '' || v === undefined ? null : v; },
    set: function (k, v) { wx.setStorageSync(k, v); },
    remove: function (k) { wx.removeStorageSync(k); }
  },
  defaults: {},
  disabled: function () { return false; },
  send: function (url, body, done) {
    wx.request({
      url: url, method: 'POST', data: body, header: { 'content-type': 'application/json' },
      success: function (res) { done(res.statusCode); },
      fail: function () { done(0); }
    });
  },
  context: function () {
    var s = systemInfo();
    var osName = String(s.system || s.platform || '').split(' ')[0];
    var osNames = { ios: 'iOS', android: 'Android', windows: 'Windows', macos: 'macOS', mac: 'macOS', harmonyos: 'HarmonyOS' };
    var desktop = s.platform === 'windows' || s.platform === 'mac';
    var ctx = {
      library: { name: 'miniprogram', version: VERSION },
      os: { name: osNames[osName.toLowerCase()] || osName || undefined, version: String(s.system || '').split(' ')[1] },
      device: { type: desktop ? 'Desktop' : /ipad|pad|tablet/i.test(s.model || '') ? 'Tablet' : 'Mobile',
        model: s.model, manufacturer: s.brand },
      screen: { width: s.screenWidth, height: s.screenHeight, density: s.pixelRatio },
      locale: s.language,
      app: { version: appVersion, wechat_version: s.version, base_library: s.SDKVersion },
      page: { url: pageUrl(), path: current.route, referrer: current.referrer }
    };
    var campaign = campaignOf(current.query) || launchCampaign;
    if (campaign) ctx.campaign = campaign;
    return ctx;
  },
  pageProperties: function () {
    var s = systemInfo();
    return { url: pageUrl(), path: current.route, referrer: current.referrer, screen_width: s.screenWidth,
      screen_height: s.screenHeight };
  },
  install: function () { /* App() and Page() are wrapped when this file loads, below */ }
};

var userloop = createTracker(platform);

// run fn, then the original handler (an error in tracking never breaks the page)
function hook(options, name, fn) {
  var orig = options[name];
  options[name] = function () {
    try { fn.apply(this, arguments); } catch (e) { /* tracking must not break the page */ }
    if (typeof orig === 'function') return orig.apply(this, arguments);
  };
}

if (typeof App === 'function') {
  var originalApp = App;
  App = function (options) {
    options = options || {};
    hook(options, 'onShow', function (launch) {
      launch = launch || {};
      launchCampaign = campaignOf(launch.query) || launchCampaign;
      var props = { scene: launch.scene, path: launch.path };
      if (launch.referrerInfo && launch.referrerInfo.appId) props.referrer_app_id = launch.referrerInfo.appId;
      userloop.track('$app_show', props);
    });
    hook(options, 'onHide', function () {
      userloop.track('$app_hide');
      userloop.flush();
    });
    return originalApp(options);
  };
}

if (typeof Page === 'function') {
  var originalPage = Page;
  Page = function (options) {
    options = options || {};
    hook(options, 'onShow', function () {
      var route = this.route || this.__route__ || null;
      if (current.route && current.route !== route) current.referrer = current.route;
      current.route = route;
      current.query = this.options || {};
      var opts = userloop.options(); // null before init(): buffered, sent by init()
      if (!opts || opts.autoPageview) userloop.page();
    });
    return originalPage(options);
  };
}

module.exports = userloop;
