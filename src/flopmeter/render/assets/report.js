// flopmeter HTML report: treemap + module table. No library, no network; model strings are
// only ever set through textContent / setAttribute, never parsed as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("flopmeter-data").textContent);
  var M = data.metrics, rows = data.rows, n = rows.length, FIX = 4;  // row = [path, type, parent, calls, ...metrics]
  var kids = [], i;
  for (i = 0; i < n; i++) kids.push([]);
  for (i = 1; i < n; i++) if (rows[i][2] >= 0) kids[rows[i][2]].push(i);
  var SVG = "http://www.w3.org/2000/svg";
  var metric = 0, zoom = 0;

  function human(x) {
    var a = Math.abs(x), s = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]];
    for (var k = 0; k < s.length; k++) if (a >= s[k][0]) {
      var v = x / s[k][0];
      return (v < 100 ? v.toPrecision(3).replace(/\.?0+$/, "") : v.toFixed(0)) + s[k][1];
    }
    return String(Math.round(x * 1000) / 1000);
  }
  function val(idx) { return rows[idx][FIX + metric]; }
  function rel(idx, base) { return base === 0 ? rows[idx][0] : rows[idx][0].slice(rows[base][0].length + 1); }
  function label(idx) { return idx === 0 ? data.root : rows[idx][0].split(".").pop(); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sel(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // ---- treemap (squarified layout) ------------------------------------------------------
  function worst(mx, mn, side, sum) {
    return Math.max(side * side * mx / (sum * sum), (sum * sum) / (side * side * mn));
  }
  function squarify(items, x, y, w, h, out) {
    // items: [{i, a}] with a = area, sorted descending; fills out with {i, x, y, w, h}
    var pos = 0;
    while (pos < items.length) {
      var side = Math.min(w, h), start = pos, sum = 0, mx = 0, mn = Infinity, cur = Infinity;
      while (pos < items.length) {
        var a = items[pos].a, s2 = sum + a, mx2 = Math.max(mx, a), mn2 = Math.min(mn, a);
        var next = worst(mx2, mn2, side, s2);
        if (pos > start && next > cur) break;
        sum = s2; mx = mx2; mn = mn2; cur = next; pos++;
      }
      var thick = sum / side, off = 0;
      for (var k = start; k < pos; k++) {
        var len = items[k].a / thick;
        if (w >= h) out.push({i: items[k].i, x: x, y: y + off, w: thick, h: len});
        else out.push({i: items[k].i, x: x + off, y: y, w: len, h: thick});
        off += len;
      }
      if (w >= h) { x += thick; w -= thick; } else { y += thick; h -= thick; }
    }
  }
  function shown(parent) {
    // the children with a positive size; a chain of single children (transformer › h) is skipped
    for (;;) {
      var pos = kids[parent].filter(function (c) { return val(c) > 0; });
      if (pos.length !== 1 || !kids[pos[0]].length) return pos;
      parent = pos[0];
    }
  }
  function layout(parent, x, y, w, h) {
    var total = 0, items = [], out = [], ch = shown(parent);
    ch.forEach(function (c) { total += val(c); });
    if (total <= 0 || w < 2 || h < 2) return out;
    ch.forEach(function (c) { items.push({i: c, a: val(c) / total * w * h}); });
    items.sort(function (p, q) { return q.a - p.a; });
    squarify(items, x, y, w, h, out);
    return out;
  }
  var palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac"];

  function drawTreemap() {
    var box = document.getElementById("treemap");
    var W = Math.max(320, box.clientWidth || 900), H = 480;
    box.textContent = "";
    var svg = sel("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, id: "treemap-svg"});
    var title = document.getElementById("treemap-title");
    title.textContent = zoom === 0 ? data.root : rows[zoom][0];
    crumbs();
    var top = layout(zoom, 0, 0, W, H);
    if (!top.length) {
      var t = sel("text", {x: 10, y: 24}); t.textContent = "no " + M[metric] + " below this module";
      svg.appendChild(t);
    }
    top.forEach(function (r, k) {
      var g = sel("g", {"class": "tile", "data-path": rows[r.i][0], tabindex: 0});
      var color = palette[k % palette.length];
      g.appendChild(sel("rect", {x: r.x, y: r.y, width: Math.max(0, r.w - 1), height: Math.max(0, r.h - 1),
                                 fill: color, "class": "outer"}));
      var tip = sel("title", {});
      tip.textContent = rows[r.i][0] + " (" + rows[r.i][1] + "): " + human(val(r.i)) + " " + M[metric];
      g.appendChild(tip);
      // one level inside, lighter
      layout(r.i, r.x + 2, r.y + 16, r.w - 4, r.h - 18).forEach(function (s) {
        var inner = sel("rect", {x: s.x, y: s.y, width: Math.max(0, s.w - 1), height: Math.max(0, s.h - 1),
                                 fill: color, "class": "inner", "data-path": rows[s.i][0]});
        var it = sel("title", {});
        it.textContent = rows[s.i][0] + " (" + rows[s.i][1] + "): " + human(val(s.i)) + " " + M[metric];
        inner.appendChild(it);
        g.appendChild(inner);
        if (s.w > 60 && s.h > 14) {
          var lt = sel("text", {x: s.x + 3, y: s.y + 11, "class": "inner-label"}), ls = rel(s.i, r.i);
          lt.textContent = ls.length * 6.5 > s.w - 4 ? ls.slice(0, Math.max(1, Math.floor((s.w - 4) / 6.5) - 1)) + "…" : ls;
          g.appendChild(lt);
        }
      });
      if (r.w > 40 && r.h > 14) {
        var txt = sel("text", {x: r.x + 4, y: r.y + 12, "class": "tile-label"});
        var s = rel(r.i, zoom) + " " + human(val(r.i));
        txt.textContent = s.length * 6.5 > r.w ? s.slice(0, Math.max(1, Math.floor(r.w / 6.5) - 1)) + "…" : s;
        g.appendChild(txt);
      }
      g.addEventListener("click", function () { if (kids[r.i].length) { zoom = r.i; drawTreemap(); } });
      g.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" && kids[r.i].length) { zoom = r.i; drawTreemap(); }
      });
      svg.appendChild(g);
    });
    box.appendChild(svg);
  }
  function crumbs() {
    var c = document.getElementById("treemap-crumbs"), chain = [], k = zoom;
    c.textContent = "";
    while (k >= 0) { chain.unshift(k); k = k === 0 ? -1 : rows[k][2]; }
    chain.forEach(function (idx, pos) {
      if (pos) c.appendChild(document.createTextNode(" › "));
      var a = el("button", {"class": "crumb", type: "button"}, label(idx));
      a.addEventListener("click", function () { zoom = idx; drawTreemap(); });
      c.appendChild(a);
    });
  }

  // ---- module table -------------------------------------------------------------------
  var open = [], depthOf = [], tbody, trs = [], sortCol = -1, sortDir = -1;
  for (i = 0; i < n; i++) depthOf.push(i === 0 ? 0 : depthOf[rows[i][2]] + 1);
  // open the tree to the asked depth, but not past ~300 visible rows (a 2,000-module model
  // opens one level; its rows are one click or one search away)
  var openDepth = 1, upTo = [];
  for (i = 0; i < n; i++) upTo[depthOf[i]] = (upTo[depthOf[i]] || 0) + 1;
  var visible = upTo[0] + (upTo[1] || 0);
  while (openDepth < data.depth && upTo[openDepth + 1] && visible + upTo[openDepth + 1] <= 300) {
    visible += upTo[openDepth + 1];
    openDepth++;
  }
  for (i = 0; i < n; i++) open.push(depthOf[i] < openDepth);
  var cols = ["module", "type", "calls"].concat(M);
  function buildTable() {
    var table = document.getElementById("modules");
    var thead = el("thead", {}), tr = el("tr", {});
    cols.forEach(function (name, c) {
      var th = el("th", {"class": c >= 2 ? "num sortable" : "sortable", "data-col": c}, name);
      th.addEventListener("click", function () {
        sortDir = sortCol === c ? -sortDir : (c >= 2 ? -1 : 1); sortCol = c; order(); refresh();
      });
      tr.appendChild(th);
    });
    thead.appendChild(tr); table.appendChild(thead);
    tbody = el("tbody", {});
    for (var r = 0; r < n; r++) {
      var row = el("tr", {"data-path": rows[r][0]});
      var td = el("td", {"class": "name"});
      td.style.paddingLeft = (0.3 + depthOf[r] * 1.1) + "em";
      if (kids[r].length) {
        var b = el("button", {"class": "toggle", type: "button", "aria-label": "expand"}, "");
        (function (idx) { b.addEventListener("click", function () { open[idx] = !open[idx]; refresh(); }); })(r);
        td.appendChild(b);
      } else td.appendChild(el("span", {"class": "leaf"}, ""));
      td.appendChild(el("span", {"class": "label", title: rows[r][0] || data.root}, label(r)));
      row.appendChild(td);
      row.appendChild(el("td", {"class": "type"}, rows[r][1]));
      row.appendChild(el("td", {"class": "num"}, String(rows[r][3])));
      for (var m = 0; m < M.length; m++) {
        var v = rows[r][FIX + m];
        row.appendChild(el("td", {"class": "num", title: v.toLocaleString("en")}, human(v)));
      }
      trs.push(row);
    }
    order();
    table.appendChild(tbody);
  }
  function key(r) { return sortCol === 0 ? label(r) : sortCol === 1 ? rows[r][1] : sortCol === 2 ? rows[r][3]
                                                      : rows[r][FIX + sortCol - 3]; }
  function order() {  // depth-first, siblings sorted by the chosen column
    var seq = [], stack = [0];
    while (stack.length) {
      var r = stack.pop();
      seq.push(r);
      var ch = kids[r].slice();
      if (sortCol >= 0) ch.sort(function (a, b) { var x = key(a), y = key(b); return x < y ? -sortDir : x > y ? sortDir : 0; });
      for (var k = ch.length - 1; k >= 0; k--) stack.push(ch[k]);
    }
    seq.forEach(function (r) { tbody.appendChild(trs[r]); });
  }
  function refresh() {
    var q = document.getElementById("search").value.trim().toLowerCase(), hits = 0;
    var show = new Array(n);
    if (q) {
      for (var r = 0; r < n; r++) {
        if (rows[r][0].toLowerCase().indexOf(q) >= 0 || rows[r][1].toLowerCase().indexOf(q) >= 0) {
          hits++;
          for (var k = r; k >= 0 && !show[k]; k = k === 0 ? -1 : rows[k][2]) show[k] = true;
        }
      }
      document.getElementById("search-count").textContent = hits + " match" + (hits === 1 ? "" : "es");
    } else {
      document.getElementById("search-count").textContent = "";
      for (var r2 = 0; r2 < n; r2++) {
        var p = r2 === 0 ? -1 : rows[r2][2], visible = true;
        for (; p >= 0; p = p === 0 ? -1 : rows[p][2]) if (!open[p]) { visible = false; break; }
        show[r2] = visible;
      }
    }
    for (var r3 = 0; r3 < n; r3++) {
      trs[r3].hidden = !show[r3];
      var b = trs[r3].querySelector("button.toggle");
      if (b) {
        var expanded = q ? true : open[r3];
        b.textContent = expanded ? "▾" : "▸";
        b.setAttribute("aria-label", expanded ? "collapse" : "expand");
      }
      trs[r3].classList.toggle("hit", !!q && (rows[r3][0].toLowerCase().indexOf(q) >= 0 ||
                                              rows[r3][1].toLowerCase().indexOf(q) >= 0));
    }
  }

  // ---- wiring -------------------------------------------------------------------------
  var select = document.getElementById("metric");
  M.forEach(function (name, k) {
    var any = false;
    for (var r = 0; r < n && !any; r++) any = rows[r][FIX + k] > 0;
    if (any) select.appendChild(el("option", {value: k}, name));
  });
  select.addEventListener("change", function () { metric = +select.value; drawTreemap(); });
  metric = select.options.length ? +select.options[0].value : 0;
  document.getElementById("search").addEventListener("input", refresh);
  document.getElementById("expand").addEventListener("click", function () { open.fill(true); refresh(); });
  document.getElementById("collapse").addEventListener("click", function () {
    for (var r = 0; r < n; r++) open[r] = depthOf[r] < 1; refresh();
  });
  performance.mark("flopmeter:start");
  drawTreemap();
  performance.mark("flopmeter:treemap");
  buildTable();
  refresh();
  performance.mark("flopmeter:table");
  window.addEventListener("resize", drawTreemap);
  document.body.setAttribute("data-rendered", "1");
})();
