// A small stand-in for the WeChat mini-program runtime, enough to run the built tracker
// (trackers/miniprogram/userloop-mp.js) under Node against a live userloop server:
//   node tests/web/miniprogram_harness.js TRACKER_JS HOST WRITE_KEY
// wx.request goes over real HTTP; storage is an in-memory map; App()/Page() keep what they are
// given and the harness calls the lifecycle hooks the way WeChat does. The first response is
// "lost" (delivered, then reported as a network failure) so the tracker must retry, and the
// server must drop the duplicates. Prints one JSON line with what the harness saw.
'use strict';
const http = require('node:http');

const [trackerPath, host, writeKey] = process.argv.slice(2);
const storage = new Map();
const requests = []; // {status, messages} per wx.request call
let loseNextResponse = true;

global.wx = {
  getStorageSync: (k) => (storage.has(k) ? storage.get(k) : ''),
  setStorageSync: (k, v) => { storage.set(k, v); },
  removeStorageSync: (k) => { storage.delete(k); },
  getSystemInfoSync: () => ({
    brand: 'Apple', model: 'iPhone 13<iPhone14,5>', system: 'iOS 16.0.2', platform: 'ios',
    screenWidth: 390, screenHeight: 844, pixelRatio: 3, language: 'zh_CN', version: '8.0.40', SDKVersion: '3.0.1',
  }),
  getAccountInfoSync: () => ({ miniProgram: { appId: 'wx0123456789', envVersion: 'release', version: '1.4.2' } }),
  request(options) {
    const url = new URL(options.url);
    const body = typeof options.data === 'string' ? options.data : JSON.stringify(options.data);
    const record = { method: options.method, path: url.pathname, header: options.header,
      messages: JSON.parse(body).batch.length, status: null };
    requests.push(record);
    const req = http.request(
      { hostname: url.hostname, port: url.port, path: url.pathname, method: options.method || 'GET',
        headers: { ...options.header, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.on('data', (chunk) => { text += chunk; });
        res.on('end', () => {
          if (loseNextResponse) { // stored by the server, but the phone never hears back
            loseNextResponse = false;
            record.status = 'lost';
            options.fail && options.fail({ errMsg: 'request:fail timeout' });
            return;
          }
          record.status = res.statusCode;
          options.success && options.success({ statusCode: res.statusCode, data: JSON.parse(text), header: res.headers });
        });
      },
    );
    req.on('error', (e) => { record.status = 'error'; options.fail && options.fail({ errMsg: e.message }); });
    req.end(body);
  },
};

// the framework: App() and Page() registries, and page instances with route and options
let app = null;
const pages = {};
let registering = null;
const ownHandlers = []; // proves the app's own lifecycle handlers still run
global.App = (options) => { app = options; };
global.Page = (options) => { pages[registering] = options; };

function registerPage(route, options) {
  registering = route;
  Page(options); // eslint-disable-line no-undef -- the global, wrapped by the tracker
}
function showPage(route, query) {
  const instance = Object.assign(Object.create(pages[route]), { route, options: query });
  pages[route].onShow.call(instance);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const flushed = (userloop) => new Promise((r) => userloop.flush(r));

async function main() {
  // app.js
  const userloop = require(trackerPath);
  userloop.init(writeKey, { host, flushInterval: 30 });
  App({ onShow() { ownHandlers.push('app.onShow'); }, onHide() { ownHandlers.push('app.onHide'); } });
  // pages/*.js
  registerPage('pages/index/index', { onShow() { ownHandlers.push('index.onShow'); } });
  registerPage('pages/course/detail', { onShow() { ownHandlers.push('detail.onShow:' + this.options.id); } });

  // a user scans a poster's QR code: the launch query carries the campaign
  app.onShow({ scene: 1047, path: 'pages/index/index', query: { utm_source: 'wechat', utm_medium: 'qrcode', utm_campaign: 'poster' } });
  await sleep(3);
  showPage('pages/index/index', { from: 'poster' });
  await sleep(3);
  userloop.track('view_course', { course_id: 'c9' });
  await sleep(3);
  showPage('pages/course/detail', { id: 'c9' });
  await sleep(3);
  userloop.identify('mp-user-1', { city: 'Hangzhou' });
  await sleep(3);
  userloop.track('purchase', { revenue: 199, course_id: 'c9' });
  await sleep(3);
  app.onHide(); // the user leaves: $app_hide, then a flush
  let ok = await flushed(userloop);
  for (let i = 0; !ok && i < 100; i++) { await sleep(50); ok = await flushed(userloop); }
  process.stdout.write(JSON.stringify({
    ok, anonymousId: userloop.getAnonymousId(), userId: userloop.getUserId(), requests, ownHandlers,
    storage: Object.fromEntries(storage),
  }) + '\n');
  process.exit(0);
}

main().catch((e) => { console.error(e && e.stack); process.exit(1); });
