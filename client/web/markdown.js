/*
 * A small, safe Markdown renderer for model output.
 *
 * Safety by construction: the text is parsed into a tree of plain objects, and the tree is turned
 * into DOM nodes with createElement and createTextNode only. Nothing is ever assigned to innerHTML,
 * so HTML in an answer (<script>, <img onerror=...>) is shown as the text it is. Links are kept only
 * for http:, https: and mailto: URLs; images are shown as links (nothing is fetched); code blocks
 * are text. Unclosed constructs (a fence still streaming in) render as far as they go.
 *
 * Supported: paragraphs (a newline is a line break), # headings, **bold**, *italic*, ~~strike~~,
 * `code`, fenced code blocks, > quotes, - and 1. lists (nested by indentation), --- rules,
 * [links](https://...), <https://...> and bare https:// URLs, and GitHub-style | tables |.
 */
(function (root) {
  "use strict";

  var SAFE_URL = /^(https?:\/\/|mailto:)[^\s\u0000-\u001f]*$/i;
  var PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

  function safeHref(url) {
    var trimmed = String(url || "").trim();
    if (trimmed.charAt(0) === "<" && trimmed.charAt(trimmed.length - 1) === ">") {
      trimmed = trimmed.slice(1, -1);
    }
    return SAFE_URL.test(trimmed) ? trimmed : null;
  }

  // ---- blocks ------------------------------------------------------------------------------

  var FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
  var HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  var RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  var QUOTE = /^ {0,3}> ?(.*)$/;
  var BULLET = /^( {0,3})([-*+])[ \t]+(.*)$/;
  var ORDERED = /^( {0,3})(\d{1,9})([.)])[ \t]+(.*)$/;
  var TABLE_DELIMITER = /^ {0,3}\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function isBlank(line) {
    return /^\s*$/.test(line);
  }

  function startsBlock(line) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
      BULLET.test(line) || ORDERED.test(line);
  }

  function splitRow(line) {
    var text = line.trim();
    if (text.charAt(0) === "|") text = text.slice(1);
    if (text.charAt(text.length - 1) === "|" && text.charAt(text.length - 2) !== "\\") text = text.slice(0, -1);
    var cells = [];
    var cell = "";
    for (var i = 0; i < text.length; i++) {
      var c = text.charAt(i);
      if (c === "\\" && text.charAt(i + 1) === "|") {
        cell += "|";
        i++;
      } else if (c === "|") {
        cells.push(cell.trim());
        cell = "";
      } else {
        cell += c;
      }
    }
    cells.push(cell.trim());
    return cells;
  }

  function parseBlocks(text) {
    var lines = String(text).replace(/\r\n?/g, "\n").split("\n");
    var blocks = [];
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      var m;
      if (isBlank(line)) {
        i++;
        continue;
      }
      if ((m = FENCE.exec(line))) {
        var fence = m[1];
        var lang = (m[2] || "").toLowerCase().replace(/[^a-z0-9_+#-]/g, "").slice(0, 30);
        var code = [];
        i++;
        while (i < lines.length && !(new RegExp("^ {0,3}" + fence.charAt(0) + "{" + fence.length + ",}\\s*$")).test(lines[i])) {
          code.push(lines[i]);
          i++;
        }
        i++; // the closing fence (or the end)
        blocks.push({ type: "code", lang: lang, text: code.join("\n") });
        continue;
      }
      if ((m = HEADING.exec(line))) {
        blocks.push({ type: "heading", level: m[1].length, children: parseInline(m[2] || "") });
        i++;
        continue;
      }
      if (RULE.test(line)) {
        blocks.push({ type: "rule" });
        i++;
        continue;
      }
      if (QUOTE.test(line)) {
        var quoted = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
          quoted.push(m[1]);
          i++;
        }
        blocks.push({ type: "quote", children: parseBlocks(quoted.join("\n")) });
        continue;
      }
      if (BULLET.test(line) || ORDERED.test(line)) {
        var list = parseList(lines, i);
        blocks.push(list.block);
        i = list.next;
        continue;
      }
      if (line.indexOf("|") !== -1 && i + 1 < lines.length && TABLE_DELIMITER.test(lines[i + 1]) &&
          lines[i + 1].indexOf("-") !== -1) {
        var header = splitRow(line);
        var aligns = splitRow(lines[i + 1]).map(function (cell) {
          var left = cell.charAt(0) === ":";
          var right = cell.charAt(cell.length - 1) === ":";
          return left && right ? "center" : right ? "right" : left ? "left" : "";
        });
        var rows = [];
        i += 2;
        while (i < lines.length && !isBlank(lines[i]) && lines[i].indexOf("|") !== -1) {
          rows.push(splitRow(lines[i]));
          i++;
        }
        blocks.push({
          type: "table",
          aligns: aligns.slice(0, header.length),
          header: header.map(parseInline),
          rows: rows.map(function (row) {
            var cells = [];
            for (var c = 0; c < header.length; c++) cells.push(parseInline(row[c] || ""));
            return cells;
          }),
        });
        continue;
      }
      var para = [];
      while (i < lines.length && !isBlank(lines[i]) && (para.length === 0 || !startsBlock(lines[i]))) {
        para.push(lines[i].replace(/^\s+/, ""));
        i++;
      }
      blocks.push({ type: "paragraph", children: parseInline(para.join("\n")) });
    }
    return blocks;
  }

  function parseList(lines, start) {
    var first = BULLET.exec(lines[start]);
    var ordered = !first;
    var firstMatch = first || ORDERED.exec(lines[start]);
    var marker = ordered ? firstMatch[3] : firstMatch[2];
    var block = { type: "list", ordered: ordered, start: ordered ? parseInt(firstMatch[2], 10) : 1, items: [] };
    var i = start;
    while (i < lines.length) {
      var m = ordered ? ORDERED.exec(lines[i]) : BULLET.exec(lines[i]);
      if (!m || (ordered ? m[3] : m[2]) !== marker) break;
      var indent = m[1].length + (ordered ? m[2].length + 1 : 1) + 1;
      var content = [ordered ? m[4] : m[3]];
      i++;
      while (i < lines.length) {
        var line = lines[i];
        if (isBlank(line)) {
          // A blank line ends the item unless the next line is indented into it.
          var next = lines[i + 1];
          if (next !== undefined && /^\s+/.test(next) && next.match(/^\s*/)[0].length >= indent) {
            content.push("");
            i++;
            continue;
          }
          break;
        }
        var leading = line.match(/^\s*/)[0].length;
        if (leading >= indent || (leading >= 2 && (BULLET.test(line.trim()) || ORDERED.test(line.trim())))) {
          content.push(line.slice(Math.min(leading, indent)));
        } else if (!startsBlock(line)) {
          content.push(line.trim()); // a lazy continuation of the item's paragraph
        } else {
          break;
        }
        i++;
      }
      var children = parseBlocks(content.join("\n"));
      block.items.push(children);
      if (isBlank(lines[i] || "") && i + 1 < lines.length) {
        var after = ordered ? ORDERED.exec(lines[i + 1]) : BULLET.exec(lines[i + 1]);
        if (after && (ordered ? after[3] : after[2]) === marker) i++; // a loose list goes on
      }
    }
    return { block: block, next: i };
  }

  // ---- inlines -----------------------------------------------------------------------------

  var AUTOLINK = /^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i;
  var BARE_URL = /^https?:\/\/[^\s<>"]+/i;

  function findClosing(text, delimiter, from) {
    var at = from;
    while (true) {
      at = text.indexOf(delimiter, at);
      if (at === -1) return -1;
      if (at > from && !/\s/.test(text.charAt(at - 1))) return at;
      at += 1;
    }
  }

  function parseLinkTarget(text, open) {
    // text[open] === "(": the URL, then an optional "title", then ")"
    var m = /^\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+("[^"\n]*"|'[^'\n]*'))?\s*\)/.exec(text.slice(open));
    if (!m) return null;
    return { url: m[1], title: m[2] ? m[2].slice(1, -1) : "", length: m[0].length };
  }

  function matchingBracket(text, open) {
    var depth = 0;
    for (var i = open; i < text.length; i++) {
      var c = text.charAt(i);
      if (c === "\\") {
        i++;
      } else if (c === "`") {
        var close = text.indexOf("`", i + 1);
        if (close !== -1) i = close;
      } else if (c === "[") {
        depth++;
      } else if (c === "]") {
        depth--;
        if (depth === 0) return i;
      }
    }
    return -1;
  }

  function parseInline(text) {
    var nodes = [];
    var buffer = "";
    var i = 0;

    function flush() {
      if (buffer) {
        nodes.push({ type: "text", text: buffer });
        buffer = "";
      }
    }

    function wrap(type, delimiter) {
      var close = findClosing(text, delimiter, i + delimiter.length);
      if (close === -1 || /\s/.test(text.charAt(i + delimiter.length))) return false;
      flush();
      nodes.push({ type: type, children: parseInline(text.slice(i + delimiter.length, close)) });
      i = close + delimiter.length;
      return true;
    }

    while (i < text.length) {
      var c = text.charAt(i);
      var rest = text.slice(i);
      var m;
      if (c === "\\" && i + 1 < text.length && PUNCTUATION.indexOf(text.charAt(i + 1)) !== -1) {
        buffer += text.charAt(i + 1);
        i += 2;
        continue;
      }
      if (c === "\\" && text.charAt(i + 1) === "\n") {
        flush();
        nodes.push({ type: "break" });
        i += 2;
        continue;
      }
      if (c === "\n") {
        buffer = buffer.replace(/ +$/, "");
        flush();
        nodes.push({ type: "break" });
        i++;
        continue;
      }
      if (c === "`") {
        var run = /^`+/.exec(rest)[0];
        var end = text.indexOf(run, i + run.length);
        while (end !== -1 && text.charAt(end + run.length) === "`") {
          end = text.indexOf(run, end + run.length + 1);
        }
        if (end !== -1) {
          flush();
          var code = text.slice(i + run.length, end).replace(/\n/g, " ");
          if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
          nodes.push({ type: "code", text: code });
          i = end + run.length;
          continue;
        }
        buffer += run;
        i += run.length;
        continue;
      }
      if ((rest.indexOf("**") === 0 && wrap("strong", "**")) ||
          (rest.indexOf("__") === 0 && !/\w/.test(text.charAt(i - 1) || "") && wrap("strong", "__")) ||
          (rest.indexOf("~~") === 0 && wrap("del", "~~")) ||
          (c === "*" && rest.indexOf("**") !== 0 && wrap("em", "*")) ||
          (c === "_" && rest.indexOf("__") !== 0 && !/\w/.test(text.charAt(i - 1) || "") && wrap("em", "_"))) {
        continue;
      }
      if (c === "[" || (c === "!" && text.charAt(i + 1) === "[")) {
        var image = c === "!";
        var open = image ? i + 1 : i;
        var close = matchingBracket(text, open);
        if (close !== -1 && text.charAt(close + 1) === "(") {
          var target = parseLinkTarget(text, close + 1);
          if (target) {
            flush();
            var label = text.slice(open + 1, close);
            var href = safeHref(target.url);
            var children = image ? [{ type: "text", text: "image: " + (label || target.url) }] : parseInline(label);
            if (href) {
              nodes.push({ type: "link", href: href, title: target.title, children: children });
            } else {
              nodes.push.apply(nodes, children); // an unsafe or relative URL: the label alone
            }
            i = close + 1 + target.length;
            continue;
          }
        }
      }
      if (c === "<" && (m = AUTOLINK.exec(rest))) {
        flush();
        nodes.push({ type: "link", href: m[1], title: "", children: [{ type: "text", text: m[1] }] });
        i += m[0].length;
        continue;
      }
      if ((c === "h" || c === "H") && !/\w/.test(text.charAt(i - 1) || "") && (m = BARE_URL.exec(rest))) {
        var url = m[0].replace(/[.,;:!?'")\]*_]+$/, "");
        flush();
        nodes.push({ type: "link", href: url, title: "", children: [{ type: "text", text: url }] });
        i += url.length;
        continue;
      }
      buffer += c;
      i++;
    }
    flush();
    return nodes;
  }

  // ---- the tree to DOM nodes (text nodes only; never HTML) -----------------------------------

  var TAGS = { strong: "strong", em: "em", del: "del", paragraph: "p" };

  function appendAll(parent, nodes, doc, render) {
    nodes.forEach(function (node) {
      parent.appendChild(render(node, doc));
    });
    return parent;
  }

  function renderInline(node, doc) {
    var el;
    switch (node.type) {
      case "text":
        return doc.createTextNode(node.text);
      case "break":
        return doc.createElement("br");
      case "code":
        el = doc.createElement("code");
        el.textContent = node.text;
        return el;
      case "link":
        el = doc.createElement("a");
        el.setAttribute("href", node.href);
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer nofollow");
        if (node.title) el.setAttribute("title", node.title);
        return appendAll(el, node.children, doc, renderInline);
      default:
        if (Object.prototype.hasOwnProperty.call(TAGS, node.type)) {
          return appendAll(doc.createElement(TAGS[node.type]), node.children, doc, renderInline);
        }
        return doc.createTextNode("");
    }
  }

  function renderBlock(block, doc) {
    var el;
    switch (block.type) {
      case "code":
        el = doc.createElement("pre");
        var code = doc.createElement("code");
        if (block.lang) code.className = "language-" + block.lang;
        code.textContent = block.text;
        el.appendChild(code);
        return el;
      case "heading":
        return appendAll(doc.createElement("h" + block.level), block.children, doc, renderInline);
      case "paragraph":
        return appendAll(doc.createElement("p"), block.children, doc, renderInline);
      case "rule":
        return doc.createElement("hr");
      case "quote":
        return appendAll(doc.createElement("blockquote"), block.children, doc, renderBlock);
      case "list":
        el = doc.createElement(block.ordered ? "ol" : "ul");
        if (block.ordered && block.start !== 1) el.setAttribute("start", String(block.start));
        block.items.forEach(function (item) {
          var li = doc.createElement("li");
          // A tight item's single paragraph renders inline, as people expect.
          if (item.length === 1 && item[0].type === "paragraph") appendAll(li, item[0].children, doc, renderInline);
          else appendAll(li, item, doc, renderBlock);
          el.appendChild(li);
        });
        return el;
      case "table":
        el = doc.createElement("table");
        var head = doc.createElement("thead");
        var headRow = doc.createElement("tr");
        block.header.forEach(function (cell, index) {
          var th = appendAll(doc.createElement("th"), cell, doc, renderInline);
          if (block.aligns[index]) th.style.textAlign = block.aligns[index];
          headRow.appendChild(th);
        });
        head.appendChild(headRow);
        el.appendChild(head);
        var body = doc.createElement("tbody");
        block.rows.forEach(function (row) {
          var tr = doc.createElement("tr");
          row.forEach(function (cell, index) {
            var td = appendAll(doc.createElement("td"), cell, doc, renderInline);
            if (block.aligns[index]) td.style.textAlign = block.aligns[index];
            tr.appendChild(td);
          });
          body.appendChild(tr);
        });
        el.appendChild(body);
        return el;
      default:
        return doc.createTextNode("");
    }
  }

  /** Markdown text to a DocumentFragment made of safe elements and text nodes. */
  function render(text, doc) {
    doc = doc || root.document;
    var fragment = doc.createDocumentFragment();
    parseBlocks(text).forEach(function (block) {
      fragment.appendChild(renderBlock(block, doc));
    });
    return fragment;
  }

  root.AgentMarkdown = { parse: parseBlocks, parseInline: parseInline, render: render, safeHref: safeHref };
})(typeof window !== "undefined" ? window : this);
