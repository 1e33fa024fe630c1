// The browser platform: localStorage (cookie fallback), fetch + sendBeacon, page context,
// automatic page views (history API included), click autocapture, Do-Not-Track.

var win = window, doc = document, nav = navigator;
var script = doc.currentScript;
var scriptOrigin = script && script.src ? script.src.replace(/^(https?:\/\/[^/]+).*$/, '$1') : '';
var lastUrl = null, referrer = doc.referrer || null;

function cookieStorage() {
  return {
    cookie: true,
    get: function (k) {
      var m = doc.cookie.match(new RegExp('(?:^|; )' + k + '=([^;]*)'));
      return m ? decodeURIComponent(m[1]) : null;
    },
    set: function (k, v) {
      if (k !== KEYS.queue) doc.cookie = k + '=' + encodeURIComponent(v) + '; path=/; max-age=31536000; SameSite=Lax';
    },
    remove: function (k) { doc.cookie = k + '=; path=/; max-age=0; SameSite=Lax'; }
  };
}

function localStore() {
  try {
    var ls = win.localStorage;
    ls.setItem('userloop_test', '1');
    ls.removeItem('userloop_test');
    return {
      get: function (k) { return ls.getItem(k); },
      set: function (k, v) { ls.setItem(k, v); },
      remove: function (k) { ls.removeItem(k); }
    };
  } catch (e) {
    return cookieStorage(); // storage disabled (some private modes, sandboxed frames)
  }
}

function pageContext() {
  var loc = win.location;
  return { url: loc.href, path: loc.pathname, referrer: referrer, title: doc.title, search: loc.search };
}

var platform = {
  storage: localStore(),
  defaults: { host: scriptOrigin || win.location.origin },
  disabled: function (opts) {
    var dnt = nav.doNotTrack || win.doNotTrack || nav.msDoNotTrack;
    return !!opts.respectDoNotTrack && (dnt === '1' || dnt === 'yes');
  },
  // text/plain is a CORS-safelisted type: no preflight; the collector reads the body as JSON anyway
  send: function (url, body, done) {
    if (!win.fetch) return done(platform.beacon(url, body) ? 200 : 0);
    win.fetch(url, { method: 'POST', body: body, headers: { 'Content-Type': 'text/plain' }, keepalive: body.length < 60000,
      credentials: 'omit' }).then(function (r) { done(r.status); }, function () { done(0); });
  },
  beacon: function (url, body) {
    try { return !!(nav.sendBeacon && nav.sendBeacon(url, body)); } catch (e) { return false; }
  },
  context: function () {
    var ctx = { library: { name: 'web', version: VERSION }, userAgent: nav.userAgent, page: pageContext(),
      screen: { width: win.screen.width, height: win.screen.height, density: win.devicePixelRatio },
      locale: nav.language };
    var campaign = campaignOf(parseQuery(win.location.search));
    if (campaign) ctx.campaign = campaign;
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }
    return ctx;
  },
  pageProperties: function () {
    return extend(pageContext(), { screen_width: win.screen.width, screen_height: win.screen.height });
  },
  install: function (api, opts) {
    function hide() { api.beacon(); }
    win.addEventListener('pagehide', hide);
    doc.addEventListener('visibilitychange', function () { if (doc.visibilityState === 'hidden') hide(); });
    if (opts.autoPageview) {
      var changed = function () {
        if (win.location.href === lastUrl) return;
        if (lastUrl) referrer = lastUrl; // inside a single-page app the previous URL is the referrer
        lastUrl = win.location.href;
        api.page();
      };
      var wrap = function (name) {
        var orig = win.history[name];
        win.history[name] = function () { var r = orig.apply(this, arguments); changed(); return r; };
      };
      wrap('pushState');
      wrap('replaceState');
      win.addEventListener('popstate', changed);
      changed();
    }
    if (opts.autocapture) doc.addEventListener('click', function (e) { autocapture(api, e.target); }, true);
  }
};

// A click on a link, a button or an element marked data-userloop-event becomes "$click" (or the
// marked name) with what the element shows; form values are never read.
function autocapture(api, target) {
  var el = target && target.closest ? target.closest('a,button,input[type=button],input[type=submit],[role=button],[data-userloop-event]') : null;
  if (!el || el.closest('[data-userloop-ignore]')) return;
  var props = { tag: el.tagName.toLowerCase() };
  var text = (el.tagName === 'INPUT' ? el.value : el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim();
  if (text) props.text = text.slice(0, 255);
  if (el.id) props.id = el.id;
  if (typeof el.className === 'string' && el.className) props.classes = el.className;
  if (el.getAttribute('href')) props.href = el.href;
  if (el.getAttribute('name')) props.name = el.getAttribute('name');
  api.track(el.getAttribute('data-userloop-event') || '$click', props);
}

var userloop = createTracker(platform);
win.userloop = userloop;
// one script tag: <script src=".../static/userloop.js" data-write-key="KEY"></script>
if (script && script.getAttribute('data-write-key')) {
  userloop.init(script.getAttribute('data-write-key'), {
    host: script.getAttribute('data-host') || undefined,
    autocapture: script.hasAttribute('data-autocapture'),
    respectDoNotTrack: script.hasAttribute('data-respect-dnt')
  });
}
