// Talking to the Lumos API: the API key, problem+json errors, uploads with progress, and
// Server-Sent Events read through fetch (EventSource cannot send an API key header).

const KEY = "lumos.apiKey";
const RECONNECT_MS = 2000;

/** An error answer of the API: HTTP status, machine-readable reason, human detail. */
export class ApiError extends Error {
  constructor(status, reason, detail) {
    super(detail || reason || `HTTP ${status}`);
    this.status = status;
    this.reason = reason;
  }
}

function authHeaders(headers = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { ...headers, "X-API-Key": key } : headers;
}

function problem(status, text) {
  try {
    const body = JSON.parse(text);
    return new ApiError(status, body.reason, body.detail);
  } catch {
    return new ApiError(status, "http_error", text.slice(0, 200) || `HTTP ${status}`);
  }
}

let asking = null;

/** Ask for the API key (one dialog, however many requests are waiting); false if refused. */
function askKey(error) {
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById("key-dialog");
    const input = dialog.querySelector("input[name=key]");
    dialog.querySelector(".key-reason").textContent =
      error.reason === "invalid_api_key"
        ? "The key was not accepted; enter another."
        : "This server needs an API key to do that.";
    input.value = "";
    dialog.addEventListener(
      "close",
      () => {
        const ok = dialog.returnValue === "ok" && input.value.trim() !== "";
        if (ok) sessionStorage.setItem(KEY, input.value.trim());
        asking = null;
        resolve(ok);
      },
      { once: true },
    );
    dialog.showModal();
  });
  return asking;
}

/** Run `send()` (which answers {status, text}); on a 401 ask for a key once and send again. */
async function withKey(send) {
  for (let asked = false; ; asked = true) {
    const { status, text } = await send();
    if (status === 401 && !asked && (await askKey(problem(status, text)))) continue;
    if (status >= 400) throw problem(status, text);
    return { status, body: text ? JSON.parse(text) : null };
  }
}

/** A JSON call: the parsed answer, or an ApiError. */
export async function call(method, path, body) {
  const { body: answer } = await withKey(async () => {
    const headers = authHeaders(body ? { "Content-Type": "application/json" } : {});
    const response = await fetch(path, {
      method,
      headers,
      body: body && JSON.stringify(body),
    });
    return { status: response.status, text: await response.text() };
  });
  return answer;
}

/** POST `file` as multipart field `file`, reporting the fraction sent; {status, body}. */
export function upload(path, file, onProgress) {
  return withKey(
    () =>
      new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", path);
        for (const [name, value] of Object.entries(authHeaders())) {
          xhr.setRequestHeader(name, value);
        }
        xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
        xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText });
        xhr.onerror = () => reject(new ApiError(0, "network", "the upload failed (network)"));
        const form = new FormData();
        form.append("file", file);
        xhr.send(form);
      }),
  );
}

/**
 * Follow an SSE endpoint until `signal` aborts, reconnecting after a drop. `path(last)` builds the
 * URL from the last event's data (null at first), so a reconnect resumes where it stopped.
 */
export async function follow(path, onEvent, signal) {
  let last = null;
  while (!signal.aborted) {
    try {
      const response = await fetch(path(last), { headers: authHeaders(), signal });
      if (!response.ok) throw problem(response.status, await response.text());
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const blocks = (buffer + value).split(/\r?\n\r?\n/);
        buffer = blocks.pop();
        for (const block of blocks) {
          const event = parseEvent(block);
          if (event.data !== undefined) {
            last = event.data;
            onEvent(event.type, event.data);
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      console.warn("event stream dropped:", error.message);
    }
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

function parseEvent(block) {
  const event = { type: "message", data: undefined };
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment (keep-alive)
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) event.data = JSON.parse(data.join("\n"));
  return event;
}

/** GET `path` as a blob URL (for <video> and <img>, which cannot send the API key); the caller
 * revokes it with URL.revokeObjectURL when done. */
export async function blobUrl(path) {
  for (let asked = false; ; asked = true) {
    const response = await fetch(path, { headers: authHeaders() });
    if (response.status === 401 && !asked && (await askKey(problem(401, await response.text())))) {
      continue;
    }
    if (!response.ok) throw problem(response.status, await response.text());
    return URL.createObjectURL(await response.blob());
  }
}
