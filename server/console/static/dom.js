// Building the page's elements: el("tag", {attributes}, ...children). Text is always set as text,
// never as HTML, so nothing a server or a user sends can become markup.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return node;
}

// The one place a message reaches the person: the status line under the header (role="status"),
// or, for a failure, the alert beside the control that caused it.
export function say(target, message, failed = false) {
  target.textContent = message;
  target.classList.toggle("failed", failed);
}

export function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1 << 20) return `${(count / 1024).toFixed(1)} KiB`;
  return `${(count / (1 << 20)).toFixed(1)} MiB`;
}

// Copy text for the person: the clipboard API where the page is a secure context (https, localhost),
// else the textarea's selection, which they copy themselves.
export async function copy(textarea) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(textarea.value);
    return "copied";
  }
  textarea.focus();
  textarea.select();
  return "selected: press Ctrl+C to copy";
}
