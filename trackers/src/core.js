// The tracker core shared by the web and the WeChat mini-program builds: identity (anonymous id,
// user id), the message queue, batching and retries, in Segment's wire format (POST /v1/batch with
// the write key in the body, because navigator.sendBeacon cannot set an Authorization header).
// A platform object supplies storage, sending and the automatic context; see web.js and
// miniprogram.js. Plain ES5 so that both builds run without a transpiler.

var VERSION = '0.1.0';
var UTM = { utm_source: 'source', utm_medium: 'medium', utm_campaign: 'name', utm_term: 'term', utm_content: 'content' };
var KEYS = { anon: 'userloop_anonymous_id', user: 'userloop_user_id', queue: 'userloop_queue' };
var MAX_QUEUE = 1000;

function extend(target) {
  for (var i = 1; i < arguments.length; i++) {
    var src = arguments[i];
    if (src) for (var k in src) if (Object.prototype.hasOwnProperty.call(src, k) && src[k] !== undefined) target[k] = src[k];
  }
  return target;
}

function uuid() {
  var b = [], i, h = '';
  var c = typeof crypto !== 'undefined' && crypto.getRandomValues ? crypto : null;
  if (c) b = c.getRandomValues(new Uint8Array(16));
  else for (i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
  b[6] = (b[6] & 15) | 64; // version 4
  b[8] = (b[8] & 63) | 128; // RFC 4122 variant
  for (i = 0; i < 16; i++) h += (i === 4 || i === 6 || i === 8 || i === 10 ? '-' : '') + (b[i] + 256).toString(16).slice(1);
  return h;
}

// "?a=1&b=x+y" -> {a: "1", b: "x y"}; bad escapes are kept as they are.
function parseQuery(search) {
  var out = {}, parts = String(search || '').replace(/^[?#]/, '').split('&');
  for (var i = 0; i < parts.length; i++) {
    if (!parts[i]) continue;
    var eq = parts[i].indexOf('='), k = eq < 0 ? parts[i] : parts[i].slice(0, eq), v = eq < 0 ? '' : parts[i].slice(eq + 1);
    try { k = decodeURIComponent(k.replace(/\+/g, ' ')); v = decodeURIComponent(v.replace(/\+/g, ' ')); } catch (e) { /* keep raw */ }
    if (!(k in out)) out[k] = v;
  }
  return out;
}

// UTM parameters of a query object -> Segment's context.campaign, or null when there are none.
function campaignOf(query) {
  var c = null;
  for (var k in UTM) if (query && query[k]) (c = c || {})[UTM[k]] = String(query[k]);
  return c;
}

function createTracker(platform) {
  var api = { VERSION: VERSION };
  var opts = null, enabled = false, writeKey = null;
  var anon = null, user = null, queue = [];
  var early = [], timer = null, sending = false, failures = 0, waiters = [];

  function get(k) { try { return platform.storage.get(k); } catch (e) { return null; } }
  function set(k, v) { try { platform.storage.set(k, v); } catch (e) { /* storage full or blocked */ } }
  function remove(k) { try { platform.storage.remove(k); } catch (e) { /* blocked */ } }
  function save() { if (opts.persistQueue) set(KEYS.queue, JSON.stringify(queue)); }

  // calls made before init() are replayed by init()
  function later(name) {
    return function () {
      if (opts) { if (enabled) return impl[name].apply(null, arguments); return; }
      early.push([name, arguments]);
    };
  }

  var impl = {
    page: function (name, properties) {
      if (name && typeof name === 'object') { properties = name; name = null; }
      var m = { properties: extend(platform.pageProperties(), properties) };
      if (name) m.name = String(name);
      enqueue('page', m);
    },
    track: function (event, properties) {
      if (!event) return;
      enqueue('track', { event: String(event), properties: extend({}, properties) });
    },
    identify: function (userId, traits) {
      if (userId && typeof userId === 'object') { traits = userId; userId = null; }
      userId = userId === null || userId === undefined || userId === '' ? user : String(userId);
      if (user && userId !== user) reset(); // another person on this device: never merge two users
      if (userId && userId !== user) { user = userId; set(KEYS.user, user); }
      enqueue('identify', { traits: extend({}, traits) });
    },
    setPersonProperties: function (properties) {
      enqueue('identify', { traits: extend({}, properties) });
    },
    reset: reset
  };

  function reset() {
    user = null;
    remove(KEYS.user);
    anon = uuid();
    set(KEYS.anon, anon);
  }

  function enqueue(type, fields) {
    var m = { type: type, messageId: uuid(), timestamp: new Date().toISOString(), anonymousId: anon };
    if (user) m.userId = user;
    m.context = platform.context();
    queue.push(extend(m, fields));
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
    save();
    if (queue.length >= opts.batchSize) flush();
    else if (!timer && !sending) timer = setTimeout(flush, opts.flushInterval);
  }

  function body(batch) {
    return JSON.stringify({ writeKey: writeKey, sentAt: new Date().toISOString(), batch: batch });
  }

  function drop(batch) {
    var ids = {};
    for (var i = 0; i < batch.length; i++) ids[batch[i].messageId] = 1;
    var kept = [];
    for (i = 0; i < queue.length; i++) if (!ids[queue[i].messageId]) kept.push(queue[i]);
    queue = kept;
    save();
  }

  function settle(ok) {
    var w = waiters;
    waiters = [];
    for (var i = 0; i < w.length; i++) try { w[i](ok); } catch (e) { /* a caller's callback */ }
  }

  // Send the queue, one batch at a time; cb(true) once it is empty, cb(false) when a send failed.
  function flush(cb) {
    if (typeof cb === 'function') waiters.push(cb);
    if (timer) { clearTimeout(timer); timer = null; }
    if (sending) return;
    if (!enabled || !queue.length) return settle(true);
    var batch = queue.slice(0, opts.batchSize);
    sending = true;
    platform.send(opts.host + '/v1/batch', body(batch), function (status) {
      sending = false;
      // 2xx: stored; other 4xx: refused for good (bad key, invalid messages), retrying cannot help
      if ((status >= 200 && status < 500 && status !== 408 && status !== 429)) {
        failures = 0;
        drop(batch);
        if (queue.length) flush(); else settle(true);
      } else {
        failures++;
        settle(false);
        if (!timer) timer = setTimeout(flush, Math.min(60000, opts.flushInterval * Math.pow(2, failures)));
      }
    });
  }

  // The page is going away: hand everything queued to the browser's beacon (fire and forget).
  function beacon() {
    if (!enabled || !queue.length || !platform.beacon) return;
    if (timer) { clearTimeout(timer); timer = null; }
    while (queue.length) {
      var batch = queue.slice(0, opts.batchSize);
      if (!platform.beacon(opts.host + '/v1/batch', body(batch))) return; // refused: keep for the next page
      drop(batch);
    }
  }

  api.init = function (key, options) {
    if (opts) return api;
    if (!key) throw new Error('userloop.init: a write key is required');
    writeKey = String(key);
    opts = extend({ host: '', autoPageview: true, autocapture: false, respectDoNotTrack: false,
      batchSize: 20, flushInterval: 2000, persistQueue: true }, platform.defaults, options);
    opts.host = String(opts.host).replace(/\/+$/, '');
    opts.batchSize = Math.max(1, opts.batchSize | 0);
    enabled = !platform.disabled(opts);
    if (!enabled) { early = []; return api; } // nothing is stored or sent
    anon = get(KEYS.anon);
    if (!anon) { anon = uuid(); set(KEYS.anon, anon); }
    user = get(KEYS.user) || null;
    if (opts.persistQueue) {
      try { queue = JSON.parse(get(KEYS.queue) || '[]') || []; } catch (e) { queue = []; }
    }
    var calls = early, leftover = queue.length; // leftover: unsent events of an earlier page
    early = [];
    platform.install(api, opts);
    for (var i = 0; i < calls.length; i++) impl[calls[i][0]].apply(null, calls[i][1]);
    if (leftover) flush();
    return api;
  };
  for (var name in impl) api[name] = later(name);
  api.flush = function (cb) { if (opts) flush(cb); else if (typeof cb === 'function') cb(true); };
  api.beacon = beacon;
  api.getAnonymousId = function () { return enabled ? anon : null; };
  api.getUserId = function () { return enabled ? user : null; };
  api.isEnabled = function () { return enabled; };
  api.options = function () { return opts; };
  return api;
}
