// IM text is HTML, as the sender's client wrote it (classic AIM sends
// <HTML><BODY><FONT ...>). It is parsed in an inert document and rebuilt
// from a short list of harmless elements; everything else is reduced to its
// text. Nothing from the sender reaches innerHTML.
//
// The functions take their document lazily so that importing this module
// touches no DOM.

const KEEP = new Set(["B", "STRONG", "I", "EM", "U", "S", "STRIKE", "SUB", "SUP", "CODE", "PRE"]);
const LINK_SCHEMES = /^(https?:|mailto:)/i;

// Plain text typed in the page -> the HTML send_im carries.
export function textToHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/\r?\n/g, "<br>");
}

const TAG = /<(\/?)([a-zA-Z][\w:-]*)([^>]*)>/g;
const HREF = /\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i;

// Drop every attribute but a link's href before the parser sees the text.
// Not for safety (the rebuild below keeps only what it trusts) but because
// the browser reports each style="" or on...="" it parses as a violation of
// the page's Content-Security-Policy, even in an inert document.
function stripAttributes(html) {
  return html.replace(TAG, (whole, slash, name, attributes) => {
    if (slash || name.toLowerCase() !== "a") return `<${slash}${name}>`;
    const match = HREF.exec(attributes);
    const href = match ? (match[1] ?? match[2] ?? match[3]) : null;
    return href === null ? "<a>" : `<a href="${href.replace(/"/g, "&quot;")}">`;
  });
}

function parse(html) {
  return new DOMParser().parseFromString(stripAttributes(String(html)), "text/html");
}

// IM HTML -> a DocumentFragment of safe nodes owned by `doc`.
export function renderHtml(html, doc = document) {
  const fragment = doc.createDocumentFragment();
  copyChildren(parse(html).body, fragment, doc);
  return fragment;
}

function copyChildren(from, to, doc) {
  for (const node of from.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      to.append(doc.createTextNode(node.data));
    } else if (node.nodeType === Node.ELEMENT_NODE) {
      to.append(copyElement(node, doc));
    }
    // comments, processing instructions: dropped
  }
}

function copyElement(element, doc) {
  const tag = element.tagName;
  if (tag === "BR") return doc.createElement("br");
  if (tag === "SCRIPT" || tag === "STYLE" || tag === "TEMPLATE") return doc.createTextNode("");
  let copy;
  if (KEEP.has(tag)) {
    copy = doc.createElement(tag.toLowerCase());
  } else if (tag === "A" && LINK_SCHEMES.test(element.getAttribute("href")?.trim() ?? "")) {
    copy = doc.createElement("a");
    copy.href = element.getAttribute("href").trim();
    copy.target = "_blank";
    copy.rel = "noopener noreferrer";
  } else if (tag === "P" || tag === "DIV") {
    // Blocks keep their line break but nothing else.
    copy = doc.createElement("span");
    copy.className = "im-block";
  } else {
    copy = doc.createDocumentFragment(); // FONT, BODY, HTML, SPAN...: text only
  }
  copyChildren(element, copy, doc);
  return copy;
}

// IM HTML -> one line of plain text, for previews and notifications.
export function htmlToText(html) {
  const body = parse(String(html).replace(/<br\s*\/?>/gi, " ")).body;
  for (const unwanted of body.querySelectorAll("script, style, template")) unwanted.remove();
  return body.textContent.replace(/\s+/g, " ").trim();
}
