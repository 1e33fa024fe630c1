/* userloop console: charts (ECharts options rendered by the server), the project switcher, and the
   segment builder. No build step; htmx does the partial page updates. */
(function () {
  'use strict';

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }

  // -- charts: <div class="chart" data-option='{...}'> ---------------------------------------------
  var charts = [];
  function initCharts(root) {
    if (!window.echarts) return;
    (root || document).querySelectorAll('[data-option]').forEach(function (el) {
      if (el.dataset.ready) return;
      el.dataset.ready = '1';
      var chart = window.echarts.init(el);
      chart.setOption(JSON.parse(el.dataset.option));
      charts.push(chart);
      if (el.dataset.dropForms) {  // funnel: click a drop-off bar to make a segment of those persons
        chart.on('click', function (p) {
          if (p.seriesId !== 'dropped') return;
          var form = document.getElementById(el.dataset.dropForms + p.dataIndex);
          if (form) form.scrollIntoView({ behavior: 'smooth', block: 'center' });
          if (form) form.querySelector('input[name="name"]').focus();
        });
      }
    });
  }
  function resizeAll() { charts.forEach(function (c) { c.resize(); }); }
  window.addEventListener('resize', resizeAll);
  window.addEventListener('load', resizeAll);  // fonts and layout settled

  // -- project switcher: same section, other project ----------------------------------------------
  function initSwitcher() {
    var sel = document.querySelector('select[data-switch]');
    if (!sel) return;
    sel.addEventListener('change', function () {
      var parts = location.pathname.split('/');  // ['', 'console', 'p', '1', section, sub...]
      var keep = parts[4] === 'analysis' ? 6 : 5;
      parts[3] = sel.value;
      location.href = parts.slice(0, keep).join('/');
    });
  }

  // -- segment builder -----------------------------------------------------------------------------
  var OPS = ['=', '!=', '>', '>=', '<', '<=', 'contains', 'not_contains', 'in', 'not_in', 'is_set', 'is_not_set'];
  var COMPARE = ['>=', '>', '=', '<=', '<', '!='];

  function value(text, op) {
    if (op === 'in' || op === 'not_in') {
      return text.split(',').map(function (s) { return scalar(s.trim()); }).filter(function (s) { return s !== ''; });
    }
    return scalar(text);
  }
  function scalar(text) { return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text; }
  function text(v) { return Array.isArray(v) ? v.join(', ') : (v === undefined || v === null ? '' : String(v)); }

  function Builder(root) {
    this.root = root;
    this.out = document.getElementById(root.dataset.output);
    this.countEl = document.getElementById(root.dataset.count);
    this.previewUrl = root.dataset.preview;
    this.lists = JSON.parse(root.dataset.lists || '{}');
    this.t = JSON.parse(root.dataset.labels || '{}');
    this.timer = null;
    var initial = this.out && this.out.value.trim() ? JSON.parse(this.out.value) : null;
    this.state = initial ? this.fromRule(initial) : { type: 'group', op: 'and', not: false, items: [] };
    this.render();
  }

  Builder.prototype.fromRule = function (r) {
    var self = this;
    if (r.not !== undefined && (r.kind === undefined || r.kind === 'not')) {
      var inner = self.fromRule(r.not);
      inner.not = !inner.not;
      return inner;
    }
    if (r.and || r.or) {
      var op = r.and ? 'and' : 'or';
      return { type: 'group', op: op, not: false, items: (r[op] || []).map(function (x) { return self.fromRule(x); }) };
    }
    var c = { type: 'cond', not: false };
    for (var k in r) c[k] = r[k];
    return c;
  };

  Builder.prototype.toRule = function (node) {
    var self = this, out;
    if (node.type === 'group') {
      var items = node.items.map(function (x) { return self.toRule(x); }).filter(Boolean);
      if (!items.length) return null;
      out = {}; out[node.op] = items;
    } else {
      out = {};
      for (var k in node) if (k !== 'type' && k !== 'not' && node[k] !== '' && node[k] !== null && node[k] !== undefined) out[k] = node[k];
    }
    return node.not ? { not: out } : out;
  };

  Builder.prototype.el = function (tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  };

  Builder.prototype.select = function (options, current, onchange, attrs) {
    var self = this;
    var s = this.el('select', attrs || {});
    options.forEach(function (o) {
      var v = Array.isArray(o) ? o[0] : o, label = Array.isArray(o) ? o[1] : (self.t[o] || o);
      var opt = self.el('option', { value: v, text: label });
      if (String(v) === String(current)) opt.selected = true;
      s.appendChild(opt);
    });
    s.addEventListener('change', function () { onchange(s.value); });
    return s;
  };

  Builder.prototype.input = function (current, onchange, attrs) {
    var i = this.el('input', attrs || {});
    i.value = current === undefined ? '' : current;
    i.addEventListener('input', function () { onchange(i.value); });
    return i;
  };

  Builder.prototype.newCond = function (kind) {
    var ev = (this.lists.events || [])[0] || '';
    switch (kind) {
      case 'person': return { type: 'cond', not: false, kind: 'person', property: (this.lists.person_properties || [])[0] || '', operator: '=', value: '' };
      case 'event': return { type: 'cond', not: false, kind: 'event', event: ev, operator: '>=', times: 1, last_days: 30 };
      case 'no_event': return { type: 'cond', not: false, kind: 'no_event', event: ev, last_days: 30 };
      case 'tag': return { type: 'cond', not: false, kind: 'tag', tag: (this.lists.tags || [])[0] || '', operator: '=', value: '' };
      case 'segment': return { type: 'cond', not: false, kind: 'segment', segment: (this.lists.segments || [])[0] || '' };
      case 'layer': return { type: 'cond', not: false, kind: 'layer', model: (this.lists.layers || [])[0] || '', layer: '' };
    }
  };

  Builder.prototype.condRow = function (c, parent, idx) {
    var self = this, ch = function () { self.changed(); };
    var parts = [self.el('span', { class: 'tag', text: self.t['kind_' + c.kind] || c.kind })];
    var listAttr = function (name) { return { list: 'dl-' + name, 'data-field': name }; };
    if (c.kind === 'person' || c.kind === 'tag') {
      var key = c.kind === 'person' ? 'property' : 'tag';
      parts.push(self.input(c[key], function (v) { c[key] = v; ch(); }, listAttr(c.kind === 'person' ? 'person_properties' : 'tags')));
      parts.push(self.select(OPS, c.operator, function (v) { c.operator = v; ch(); self.render(); }, { 'data-field': 'operator' }));
      if (c.operator !== 'is_set' && c.operator !== 'is_not_set') {
        parts.push(self.input(text(c.value), function (v) { c.value = value(v, c.operator); ch(); }, { 'data-field': 'value', placeholder: self.t.value || 'value' }));
      }
    } else if (c.kind === 'event' || c.kind === 'no_event') {
      parts.push(self.input(c.event, function (v) { c.event = v; ch(); }, listAttr('events')));
      if (c.kind === 'event') {
        parts.push(self.select(COMPARE, c.operator, function (v) { c.operator = v; ch(); }, { 'data-field': 'operator' }));
        parts.push(self.input(c.times, function (v) { c.times = parseInt(v, 10) || 0; ch(); }, { type: 'number', min: '0', 'data-field': 'times', style: 'width:70px' }));
        parts.push(self.el('span', { text: self.t.times || 'times' }));
      }
      parts.push(self.el('span', { text: self.t.in_last || 'in the last' }));
      parts.push(self.input(c.last_days === undefined ? '' : c.last_days, function (v) { c.last_days = v === '' ? undefined : parseInt(v, 10); ch(); }, { type: 'number', min: '1', 'data-field': 'last_days', style: 'width:70px' }));
      parts.push(self.el('span', { text: self.t.days || 'days' }));
    } else if (c.kind === 'segment') {
      parts.push(self.input(c.segment, function (v) { c.segment = v; ch(); }, listAttr('segments')));
    } else if (c.kind === 'layer') {
      parts.push(self.input(c.model, function (v) { c.model = v; ch(); }, listAttr('layers')));
      parts.push(self.input(c.layer, function (v) { c.layer = v; ch(); }, { 'data-field': 'layer', placeholder: 'layer' }));
    } else {
      parts.push(self.el('code', { text: JSON.stringify(self.toRule(c)) }));
    }
    return self.el('div', { class: 'cond', 'data-kind': c.kind }, [self.notBox(c)].concat(parts).concat([self.removeButton(parent, idx)]));
  };

  Builder.prototype.notBox = function (node) {
    var self = this;
    var box = self.el('input', { type: 'checkbox', 'data-field': 'not' });
    box.checked = !!node.not;
    box.addEventListener('change', function () { node.not = box.checked; self.changed(); self.render(); });
    return self.el('label', { class: 'muted' }, [box, document.createTextNode(self.t.not || 'NOT')]);
  };

  Builder.prototype.removeButton = function (parent, idx) {
    var self = this;
    if (!parent) return null;
    return self.el('button', { type: 'button', class: 'small secondary', text: '×', title: self.t.remove || 'remove',
      onclick: function () { parent.items.splice(idx, 1); self.changed(); self.render(); } });
  };

  Builder.prototype.group = function (g, parent, idx) {
    var self = this;
    var head = self.el('div', { class: 'cond' }, [
      parent ? self.notBox(g) : (g.not ? self.notBox(g) : self.notBox(g)),
      self.select([['and', self.t.all || 'all of (AND)'], ['or', self.t.any || 'any of (OR)']], g.op,
        function (v) { g.op = v; self.changed(); self.render(); }, { 'data-field': 'group-op' }),
      self.removeButton(parent, idx)
    ]);
    var body = g.items.map(function (item, i) {
      return item.type === 'group' ? self.group(item, g, i) : self.condRow(item, g, i);
    });
    var adders = ['person', 'event', 'no_event', 'tag', 'segment', 'layer'].map(function (k) {
      return self.el('button', { type: 'button', class: 'small secondary', 'data-add': k, text: '+ ' + (self.t['kind_' + k] || k),
        onclick: function () { g.items.push(self.newCond(k)); self.changed(); self.render(); } });
    });
    adders.push(self.el('button', { type: 'button', class: 'small secondary', 'data-add': 'group', text: '+ ' + (self.t.group || 'group'),
      onclick: function () { g.items.push({ type: 'group', op: g.op === 'and' ? 'or' : 'and', not: false, items: [] }); self.changed(); self.render(); } }));
    return self.el('div', { class: 'rule ' + g.op + (g.not ? ' not' : '') }, [head].concat(body).concat([self.el('div', { class: 'toolbar' }, adders)]));
  };

  Builder.prototype.render = function () {
    var focused = document.activeElement && this.root.contains(document.activeElement) ? document.activeElement : null;
    this.root.innerHTML = '';
    this.root.appendChild(this.group(this.state, null, 0));
    if (focused) { /* keep typing position: re-rendering happens only on structural changes */ }
  };

  Builder.prototype.changed = function () {
    var rule = this.toRule(this.state);
    if (this.out) this.out.value = rule ? JSON.stringify(rule) : '';
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.preview(rule); }, 300);
  };

  Builder.prototype.preview = function (rule) {
    var self = this;
    if (!self.countEl) return;
    if (!rule) { self.countEl.textContent = '—'; self.countEl.dataset.state = 'empty'; return; }
    self.countEl.dataset.state = 'loading';
    var seq = (self.seq = (self.seq || 0) + 1);
    fetch(self.previewUrl, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
      body: JSON.stringify({ rule: rule })
    }).then(function (r) { return r.json(); }).then(function (body) {
      if (seq !== self.seq) return;
      var err = document.getElementById(self.root.dataset.error);
      if (body.error) {
        self.countEl.textContent = '—';
        self.countEl.dataset.state = 'error';
        if (err) { err.textContent = body.error.message + (body.error.field ? ' (' + body.error.field + ')' : ''); err.hidden = false; }
      } else {
        self.countEl.textContent = body.count_text;
        self.countEl.dataset.count = body.count;
        self.countEl.dataset.state = 'ok';
        if (err) err.hidden = true;
      }
    });
  };

  function initBuilders(root) {
    (root || document).querySelectorAll('[data-builder]').forEach(function (el) {
      if (el.dataset.ready) return;
      el.dataset.ready = '1';
      var b = new Builder(el);
      el.builder = b;
      if (b.out && b.out.value.trim()) b.changed();
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    initCharts(); initSwitcher(); initBuilders();
  });
  document.addEventListener('htmx:afterSwap', function (e) { initCharts(e.target); initBuilders(e.target); });
})();
