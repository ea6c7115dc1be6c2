// The facerec web page: plain ES module, no build step, the public API only.
// Names and metadata are always put in the page as text (textContent), never as HTML.

const KEY = "facerec.apiKey";
const GALLERY = "facerec.gallery";
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY) || "",
  gallery: sessionStorage.getItem(GALLERY) || "",
  photo: null, // the File being recognised
  photoImage: null, // its decoded <img>, for cropping a face to enrol
  thresholdTouched: false,
  identityCursor: null,
};

// ---------------------------------------------------------------- small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function say(message, kind = "info") {
  const status = $("status");
  status.textContent = message;
  status.dataset.kind = kind;
}

function percent(value) {
  return `${Math.round(value * 1000) / 10}%`;
}

function thumb(data, alt) {
  if (!data) return el("span", { class: "thumb empty", "aria-hidden": "true" });
  const src = data.startsWith("data:") ? data : `data:image/jpeg;base64,${data}`;
  return el("img", { class: "thumb", src, alt, width: 64, height: 64 });
}

function g() {
  return encodeURIComponent(state.gallery);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `request failed (${status})`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, { json, form, query } = {}) {
  const headers = { "X-API-Key": state.key };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const url = query ? `${path}?${new URLSearchParams(query)}` : path;
  const response = await fetch(url, { method, headers, body });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// An image job: asked to wait, then followed until it is done or failed.
async function job(path, form, query = {}) {
  let body = await api("POST", path, { form, query: { wait: "30", ...query } });
  while (body.status === "queued" || body.status === "running") {
    body = await api("GET", `/v1/jobs/${encodeURIComponent(body.job_id)}`, { query: { wait: "10" } });
  }
  if (body.status === "failed") throw new ApiError(body.error?.status || 500, body.error);
  return body.result;
}

function failed(error) {
  say(error instanceof ApiError ? error.message : String(error), "error");
  if (error instanceof ApiError && error.status === 401) logout("That key was not accepted.");
}

async function confirmed(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  return dialog.returnValue === "ok";
}

// ---------------------------------------------------------------- log in, galleries, tabs

async function login(key) {
  state.key = key;
  try {
    await loadGalleries();
  } catch (error) {
    state.key = "";
    failed(error);
    return false;
  }
  sessionStorage.setItem(KEY, key);
  $("login").hidden = true;
  $("session").hidden = false;
  $("tabs").hidden = false;
  show(location.hash.slice(1) || "recognise");
  say("Logged in.");
  return true;
}

function logout(message = "Logged out.") {
  sessionStorage.removeItem(KEY);
  state.key = "";
  for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  $("login").hidden = false;
  $("session").hidden = true;
  $("tabs").hidden = true;
  $("api-key").value = "";
  say(message);
}

async function loadGalleries() {
  let { collections } = await api("GET", "/v1/collections");
  if (!collections.length) {
    // A new tenant: the gallery the CLI uses by default, so there is somewhere to enrol.
    await api("PUT", "/v1/collections/default").catch(() => {});
    ({ collections } = await api("GET", "/v1/collections"));
  }
  const select = $("gallery");
  select.replaceChildren();
  if (!collections.some((c) => c.name === state.gallery)) {
    state.gallery = collections.length ? collections[0].name : "default";
  }
  const names = collections.map((c) => c.name);
  if (!names.includes(state.gallery)) collections.unshift({ name: state.gallery, identities: 0 });
  for (const c of collections) {
    const count = c.identities === 1 ? "1 person" : `${c.identities} people`;
    select.append(el("option", { value: c.name, text: `${c.name} (${count})` }));
  }
  select.value = state.gallery;
  sessionStorage.setItem(GALLERY, state.gallery);
}

const TABS = ["recognise", "people", "unknown", "batches", "verify"];

function show(tab) {
  if (!TABS.includes(tab)) tab = "recognise";
  for (const name of TABS) $(name).hidden = name !== tab;
  for (const button of document.querySelectorAll("#tabs button")) {
    if (button.dataset.tab === tab) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  history.replaceState(null, "", `#${tab}`);
  const load = { people: loadIdentities, unknown: loadGroups, batches: loadBatches }[tab];
  if (load) load().catch(failed);
}

// ---------------------------------------------------------------- recognise and enrol

async function recognise(note = "") {
  if (!state.photo) return;
  const form = new FormData();
  form.append("image", state.photo, state.photo.name || "photo.jpg");
  const query = { top_k: "3" };
  if (state.thresholdTouched) query.threshold = $("threshold").value;
  say("Recognising...");
  $("enrol").hidden = true;
  let result;
  try {
    result = await job(`/v1/collections/${g()}/recognize`, form, query);
  } catch (error) {
    failed(error);
    return;
  }
  if (!state.thresholdTouched) {
    $("threshold").value = String(result.threshold);
    $("threshold-value").textContent = `${result.threshold} (gallery default)`;
  }
  drawResult(result);
  const known = result.faces.filter((f) => f.identity).length;
  say(`${note}${result.faces.length} faces found, ${known} recognised.`);
}

// The stable reasons a face falls under a quality bar, as people read them.
const QUALITY_REASONS = {
  too_small: "too small",
  blurred: "blurred",
  too_dark: "too dark",
  too_bright: "too bright",
  profile: "turned away",
  low_score: "unsure detection",
};

function reasonsText(reasons) {
  return reasons.map((r) => QUALITY_REASONS[r] || r).join(", ");
}

function qualityText(face) {
  const q = face.quality;
  if (!q) return "";
  const issues = face.quality_issues?.length ? `; ${reasonsText(face.quality_issues)}` : "";
  return `quality ${q.score.toFixed(2)} (sharpness ${q.sharpness.toFixed(2)}, brightness ${q.brightness.toFixed(2)}, yaw ${Math.round(q.pose.yaw)}°)${issues}`;
}

function faceLabel(face, index) {
  if (face.too_small) return `Face ${index + 1}: too small to match`;
  if (face.quality_issues?.length) return `Face ${index + 1}: not matched, ${reasonsText(face.quality_issues)}`;
  if (face.identity) return `Face ${index + 1}: ${face.identity.name}, ${percent(face.confidence)}`;
  return `Face ${index + 1}: unknown`;
}

function tagText(face) {
  if (face.identity) return `${face.identity.name} ${percent(face.confidence)}`;
  if (face.quality_issues?.length) return reasonsText(face.quality_issues);
  return face.too_small ? "too small" : "unknown";
}

function drawResult(result) {
  const box = $("result");
  box.replaceChildren();
  const { width, height } = result.image;
  const frame = el("div", { class: "frame" });
  frame.append(el("img", { src: state.photoImage.src, alt: "The photo", class: "photo" }));
  result.faces.forEach((face, index) => {
    const [x1, y1, x2, y2] = face.bbox;
    const candidates = el(
      "ul",
      { class: "candidates" },
      (face.candidates || []).map((c) =>
        el("li", { text: `${c.name}: similarity ${c.similarity.toFixed(2)}, ${percent(c.confidence)}` }),
      ),
    );
    if (!face.candidates?.length) candidates.append(el("li", { text: "no candidates" }));
    const button = el(
      "button",
      {
        type: "button",
        class: face.identity ? "face known" : face.too_small ? "face unknown small" : "face unknown",
        "aria-label": faceLabel(face, index),
        onclick: () => openEnrol(face, index),
      },
      el("span", { class: "tag", text: tagText(face) }),
      candidates,
    );
    button.style.left = `${(100 * x1) / width}%`;
    button.style.top = `${(100 * y1) / height}%`;
    button.style.width = `${(100 * (x2 - x1)) / width}%`;
    button.style.height = `${(100 * (y2 - y1)) / height}%`;
    frame.append(button);
  });
  box.append(frame);
  // The same faces as a list: readable on a phone and by a screen reader.
  const list = el("ol", { class: "faces" });
  result.faces.forEach((face, index) => {
    const tops = (face.candidates || []).map((c) => `${c.name} ${c.similarity.toFixed(2)}`).join(", ");
    list.append(
      el(
        "li",
        {},
        el("span", { text: faceLabel(face, index) }),
        tops ? el("span", { class: "hint", text: ` (candidates: ${tops})` }) : null,
        face.quality ? el("span", { class: "hint quality", text: ` ${qualityText(face)}` }) : null,
        " ",
        el("button", { type: "button", text: face.identity ? "Add to a person" : "Enrol", onclick: () => openEnrol(face, index) }),
      ),
    );
  });
  box.append(list);
}

// The face cut from the photo with a margin, so the detector finds it again on its own.
function cropFace(face) {
  const image = state.photoImage;
  const [x1, y1, x2, y2] = face.bbox;
  const w = x2 - x1;
  const h = y2 - y1;
  const sx = Math.max(0, x1 - w * 0.6);
  const sy = Math.max(0, y1 - h * 0.6);
  const sw = Math.min(image.naturalWidth, x2 + w * 0.6) - sx;
  const sh = Math.min(image.naturalHeight, y2 + h * 0.6) - sy;
  const scale = Math.max(1, 240 / Math.min(sw, sh));
  const canvas = el("canvas", { width: Math.round(sw * scale), height: Math.round(sh * scale) });
  canvas.getContext("2d").drawImage(image, sx, sy, sw, sh, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.95));
}

async function enrolFace(identityId, face) {
  const form = new FormData();
  form.append("image", await cropFace(face), "face.jpg");
  const result = await job(
    `/v1/collections/${g()}/identities/${encodeURIComponent(identityId)}/faces`,
    form,
    { largest_face: "true" },
  );
  if (!result.faces.length && !result.duplicates?.length) {
    const reason = result.refused?.[0]?.detail || result.refused?.[0]?.reason || "no face";
    throw new Error(`The face could not be enrolled: ${reason}`);
  }
  return result;
}

async function openEnrol(face, index) {
  const panel = $("enrol");
  panel.replaceChildren(el("h3", { text: `Enrol ${faceLabel(face, index).toLowerCase()}` }));
  let identities = [];
  try {
    identities = (await api("GET", `/v1/collections/${g()}/identities`, { query: { limit: "100" } })).identities;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) failed(error);
  }
  const name = el("input", { id: "enrol-name", type: "text", required: true, maxlength: "200", autocomplete: "off" });
  const newForm = el(
    "form",
    { class: "row" },
    el("label", { for: "enrol-name", text: "New person's name" }),
    name,
    el("button", { type: "submit", text: "Add as a new person" }),
  );
  newForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    let created;
    try {
      created = await api("POST", `/v1/collections/${g()}/identities`, { json: { name: name.value } });
      await enrolFace(created.id, face);
    } catch (error) {
      if (created) await api("DELETE", `/v1/collections/${g()}/identities/${created.id}`).catch(() => {});
      failed(error);
      return;
    }
    panel.hidden = true;
    await loadGalleries().catch(failed);
    await recognise(`Enrolled ${created.name}. `);
  });
  panel.append(newForm);
  if (identities.length) {
    const select = el(
      "select",
      { id: "enrol-existing" },
      identities.map((i) => el("option", { value: i.id, text: i.name })),
    );
    const existingForm = el(
      "form",
      { class: "row" },
      el("label", { for: "enrol-existing", text: "Existing person" }),
      select,
      el("button", { type: "submit", text: "Add to this person" }),
    );
    existingForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = identities.find((i) => i.id === select.value);
      try {
        await enrolFace(select.value, face);
      } catch (error) {
        failed(error);
        return;
      }
      panel.hidden = true;
      await recognise(`Added the face to ${chosen ? chosen.name : "the person"}. `);
    });
    panel.append(existingForm);
  }
  panel.append(el("button", { type: "button", text: "Cancel", onclick: () => (panel.hidden = true) }));
  panel.hidden = false;
  name.focus();
}

function choosePhoto(file) {
  if (!file) return;
  state.photo = file;
  const image = new Image();
  image.alt = "";
  image.onload = () => recognise();
  image.onerror = () => say("That file is no image this browser can show.", "error");
  if (state.photoImage) URL.revokeObjectURL(state.photoImage.src);
  image.src = URL.createObjectURL(file);
  state.photoImage = image;
}

// ---------------------------------------------------------------- people (identities)

async function loadIdentities(more = false) {
  const list = $("identities");
  if (!more) {
    list.replaceChildren();
    state.identityCursor = null;
  }
  const query = { limit: "50" };
  if (more && state.identityCursor) query.cursor = state.identityCursor;
  let page;
  try {
    page = await api("GET", `/v1/collections/${g()}/identities`, { query });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      list.replaceChildren(el("li", { class: "empty", text: "This gallery has nobody yet." }));
      return;
    }
    throw error;
  }
  if (!more && !page.identities.length) list.append(el("li", { class: "empty", text: "This gallery has nobody yet." }));
  for (const identity of page.identities) list.append(identityCard(identity));
  state.identityCursor = page.next_cursor;
  $("more-identities").hidden = !page.next_cursor;
}

function identityCard(identity) {
  const base = `/v1/collections/${g()}/identities/${encodeURIComponent(identity.id)}`;
  const picture = el("span", { class: "thumb empty", "aria-hidden": "true" });
  const title = el("h3", { text: identity.name });
  const count = el("p", { class: "count", text: faces(identity.face_count) });
  const card = el("li", { class: "card", "data-id": identity.id }, picture, title, count);
  const meta = identity.metadata && Object.keys(identity.metadata).length ? JSON.stringify(identity.metadata) : "";
  if (meta) card.append(el("p", { class: "hint meta", text: meta }));
  api("GET", `${base}/faces`)
    .then((body) => {
      if (body.faces.length) picture.replaceWith(thumb(body.faces[0].thumbnail, `A face of ${identity.name}`));
    })
    .catch(() => {});

  const fileId = `add-${identity.id}`;
  const files = el("input", { id: fileId, type: "file", accept: "image/*", multiple: true, class: "visually-hidden" });
  files.addEventListener("change", async () => {
    const form = new FormData();
    for (const file of files.files) form.append("image", file, file.name);
    say(`Adding photos to ${identity.name}...`);
    try {
      const result = await job(`${base}/faces`, form, { largest_face: "true" });
      const reasons = reasonsText((result.refused || []).map((r) => r.reason));
      const refused = result.refused?.length ? `, ${result.refused.length} refused (${reasons})` : "";
      say(`${faces(result.faces.length)} added to ${identity.name}${refused}.`);
    } catch (error) {
      failed(error);
    }
    await loadIdentities().catch(failed);
  });
  const rename = el("button", {
    type: "button",
    text: "Rename",
    "aria-label": `Rename ${identity.name}`,
    onclick: () => {
      const input = el("input", { id: `rename-${identity.id}`, type: "text", value: identity.name, required: true, maxlength: "200" });
      const form = el(
        "form",
        { class: "row" },
        el("label", { for: input.id, text: "New name" }),
        input,
        el("button", { type: "submit", text: "Save" }),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          await api("PATCH", base, { json: { name: input.value } });
          say(`Renamed to ${input.value}.`);
        } catch (error) {
          failed(error);
          return;
        }
        await loadIdentities().catch(failed);
      });
      card.append(form);
      input.focus();
    },
  });
  const remove = el("button", {
    type: "button",
    class: "danger",
    text: "Delete",
    "aria-label": `Delete ${identity.name}`,
    onclick: async () => {
      if (!(await confirmed(`Delete ${identity.name} and erase ${faces(identity.face_count)}?`))) return;
      try {
        const erased = await api("DELETE", base);
        say(`Deleted ${identity.name}: ${faces(erased.deleted_faces)} erased, ${erased.remaining_faces} left.`);
      } catch (error) {
        failed(error);
        return;
      }
      await loadIdentities().catch(failed);
      await loadGalleries().catch(failed);
    },
  });
  card.append(
    el(
      "div",
      { class: "actions" },
      el("label", { for: fileId, class: "button", text: "Add photos" }),
      files,
      rename,
      remove,
    ),
  );
  return card;
}

function faces(n) {
  return n === 1 ? "1 face" : `${n} faces`;
}

// ---------------------------------------------------------------- unknown faces grouped into people

async function loadGroups() {
  const list = $("groups");
  list.replaceChildren();
  let body;
  try {
    body = await api("GET", `/v1/collections/${g()}/people`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      list.append(el("li", { class: "empty", text: "No unknown faces in this gallery." }));
      return;
    }
    throw error;
  }
  $("unclustered").textContent = body.unclustered ? `${faces(body.unclustered)} in no group yet` : "";
  if (!body.people.length) list.append(el("li", { class: "empty", text: "No groups of unknown faces." }));
  body.people.forEach((person, index) => {
    const label = `Group ${index + 1}`;
    list.append(
      el(
        "li",
        { class: "card", "data-person": person.id },
        thumb(person.thumbnail, `A face of ${label.toLowerCase()}`),
        el("h3", { text: label }),
        el("p", { class: "count", text: faces(person.face_count) }),
        el("button", { type: "button", text: "Review", "aria-label": `Review ${label.toLowerCase()}`, onclick: () => openGroup(person.id, label, body.people) }),
      ),
    );
  });
}

async function openGroup(personId, label, people) {
  const panel = $("group");
  const base = `/v1/collections/${g()}/people/${encodeURIComponent(personId)}`;
  let person;
  try {
    person = await api("GET", base);
  } catch (error) {
    failed(error);
    return;
  }
  const after = async (message) => {
    say(message);
    panel.hidden = true;
    await loadGroups().catch(failed);
  };
  const grid = el("ul", { class: "grid", "aria-label": `Faces of ${label.toLowerCase()}` });
  for (const face of person.faces) {
    const where = face.image ? `from ${face.image}` : "";
    grid.append(
      el(
        "li",
        {},
        thumb(face.thumbnail, `Face ${where}`),
        el("span", { class: "hint", text: face.image || "" }),
        el("button", {
          type: "button",
          text: "Split off",
          "aria-label": `Split off the face ${where}`,
          onclick: async () => {
            try {
              await api("POST", `${base}/faces/${encodeURIComponent(face.face_id)}/split`);
            } catch (error) {
              failed(error);
              return;
            }
            await after("The face is a group of its own now.");
          },
        }),
        el("button", {
          type: "button",
          class: "danger",
          text: "Reject",
          "aria-label": `Reject the face ${where}`,
          onclick: async () => {
            try {
              await api("DELETE", `${base}/faces/${encodeURIComponent(face.face_id)}`);
            } catch (error) {
              failed(error);
              return;
            }
            await after("The face was erased.");
          },
        }),
      ),
    );
  }
  const name = el("input", { id: "group-name", type: "text", required: true, maxlength: "200", autocomplete: "off" });
  const nameForm = el(
    "form",
    { class: "row" },
    el("label", { for: "group-name", text: "Name this person" }),
    name,
    el("button", { type: "submit", text: "Name" }),
  );
  nameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    let identity;
    try {
      identity = await api("POST", `${base}/name`, { json: { name: name.value } });
    } catch (error) {
      failed(error);
      return;
    }
    await loadGalleries().catch(failed);
    await after(`Named ${identity.name}: ${faces(identity.face_count)} enrolled.`);
  });
  panel.replaceChildren(el("h3", { text: `${label}: ${faces(person.face_count)}` }), nameForm);
  const others = people.filter((p) => p.id !== personId);
  if (others.length) {
    const select = el(
      "select",
      { id: "merge-into" },
      others.map((p) => el("option", { value: p.id, text: `Group ${people.indexOf(p) + 1} (${faces(p.face_count)})` })),
    );
    const mergeForm = el(
      "form",
      { class: "row" },
      el("label", { for: "merge-into", text: "Merge into" }),
      select,
      el("button", { type: "submit", text: "Merge" }),
    );
    mergeForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("POST", `${base}/merge`, { json: { into: select.value } });
      } catch (error) {
        failed(error);
        return;
      }
      await after("Merged.");
    });
    panel.append(mergeForm);
  }
  panel.append(grid, el("button", { type: "button", text: "Close", onclick: () => (panel.hidden = true) }));
  panel.hidden = false;
  name.focus();
}

// ---------------------------------------------------------------- batches

async function loadBatches() {
  const list = $("batch-list");
  list.replaceChildren();
  let body;
  try {
    body = await api("GET", `/v1/collections/${g()}/batches`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      list.append(el("li", { class: "empty", text: "No batches in this gallery." }));
      return;
    }
    throw error;
  }
  if (!body.batches.length) list.append(el("li", { class: "empty", text: "No batches in this gallery." }));
  for (const batch of body.batches) {
    const c = batch.counts || {};
    list.append(
      el(
        "li",
        {},
        el("strong", { text: batch.name || batch.id.slice(0, 12) }),
        ` ${batch.status} `,
        el("progress", { max: "1", value: String(batch.progress ?? 0), "aria-label": `Progress of ${batch.name || "the batch"}` }),
        ` ${c.done ?? 0} of ${c.submitted ?? 0} images, ${c.faces ?? 0} faces, ${c.matched ?? 0} matched, ${c.unassigned ?? 0} unknown `,
        el("button", { type: "button", text: "Results", onclick: () => openBatch(batch, 0) }),
      ),
    );
  }
}

async function openBatch(batch, cursor) {
  const panel = $("batch");
  let page;
  try {
    page = await api("GET", `/v1/collections/${g()}/batches/${encodeURIComponent(batch.id)}/results`, {
      query: { limit: "20", cursor: String(cursor) },
    });
  } catch (error) {
    failed(error);
    return;
  }
  const rows = page.results.map((r) => {
    const named = (r.faces || []).filter((f) => f.identity).map((f) => f.identity.name);
    const text = r.error ? `failed: ${r.error.detail || r.error.code}` : `${faces((r.faces || []).length)}${named.length ? `: ${named.join(", ")}` : ""}`;
    return el("tr", {}, el("td", { text: r.name }), el("td", { text: r.status }), el("td", { text }));
  });
  const table = el(
    "table",
    {},
    el("caption", { text: `Results of ${batch.name || "the batch"}` }),
    el("thead", {}, el("tr", {}, el("th", { text: "Image" }), el("th", { text: "Status" }), el("th", { text: "Faces" }))),
    el("tbody", {}, rows),
  );
  panel.replaceChildren(table);
  if (page.next_cursor !== null && page.next_cursor !== undefined) {
    panel.append(el("button", { type: "button", text: "Next page", onclick: () => openBatch(batch, page.next_cursor) }));
  }
  panel.append(el("button", { type: "button", text: "Close", onclick: () => (panel.hidden = true) }));
  panel.hidden = false;
}

async function sendBatch(files) {
  const base = `/v1/collections/${g()}/batches`;
  const batch = await api("POST", base, { json: {} });
  for (let i = 0; i < files.length; i += 20) {
    const form = new FormData();
    for (const file of files.slice(i, i + 20)) form.append("image", file, file.name);
    await api("POST", `${base}/${encodeURIComponent(batch.id)}/images`, { form });
    say(`Sent ${Math.min(i + 20, files.length)} of ${files.length} photos...`);
  }
  await api("POST", `${base}/${encodeURIComponent(batch.id)}/close`);
  say(`Batch of ${files.length} photos sent.`);
  await loadGalleries();
  await loadBatches();
}

// ---------------------------------------------------------------- verify

async function verify() {
  const form = new FormData();
  const [a] = $("verify-1").files;
  const [b] = $("verify-2").files;
  form.append("image1", a, a.name);
  form.append("image2", b, b.name);
  say("Comparing...");
  let result;
  try {
    result = await job("/v1/verify", form);
  } catch (error) {
    failed(error);
    return;
  }
  const verdict = result.same ? "Same person" : "Not the same person";
  $("verdict").textContent = `${verdict}: similarity ${result.similarity.toFixed(2)}, threshold ${result.threshold}.`;
  $("verdict").dataset.same = String(result.same);
  say(verdict);
}

function preview(input, image) {
  input.addEventListener("change", () => {
    const [file] = input.files;
    if (image.src) URL.revokeObjectURL(image.src);
    image.hidden = !file;
    if (file) {
      image.src = URL.createObjectURL(file);
      image.alt = `Preview of ${file.name}`;
    }
  });
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("api-key").value.trim());
  });
  $("logout").addEventListener("click", () => logout());
  $("gallery").addEventListener("change", () => {
    state.gallery = $("gallery").value;
    sessionStorage.setItem(GALLERY, state.gallery);
    show(location.hash.slice(1));
  });
  $("new-gallery").addEventListener("click", async () => {
    const input = el("input", { id: "gallery-name", type: "text", required: true, pattern: "[A-Za-z0-9_.\\-]+", autocomplete: "off" });
    const form = el(
      "form",
      { class: "row" },
      el("label", { for: "gallery-name", text: "New gallery's name" }),
      input,
      el("button", { type: "submit", text: "Create" }),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("PUT", `/v1/collections/${encodeURIComponent(input.value)}`);
      } catch (error) {
        failed(error);
        return;
      }
      state.gallery = input.value;
      form.remove();
      await loadGalleries().catch(failed);
      say(`Gallery ${input.value} created.`);
      show(location.hash.slice(1));
    });
    $("session").append(form);
    input.focus();
  });
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => show(button.dataset.tab));
  }
  $("photo").addEventListener("change", () => choosePhoto($("photo").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choosePhoto(event.dataTransfer.files[0]);
  });
  // A photo dropped beside the drop zone is not opened in place of the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
  $("threshold").addEventListener("change", () => {
    state.thresholdTouched = true;
    $("threshold-value").textContent = $("threshold").value;
    recognise();
  });
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = $("threshold").value;
  });
  $("more-identities").addEventListener("click", () => loadIdentities(true).catch(failed));
  $("cluster").addEventListener("click", async () => {
    try {
      const body = await api("POST", `/v1/collections/${g()}/people/cluster`);
      say(`Grouped: ${body.people ?? 0} groups.`);
    } catch (error) {
      failed(error);
    }
    await loadGroups().catch(failed);
  });
  $("batch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendBatch([...$("batch-files").files]).catch(failed);
  });
  preview($("verify-1"), $("verify-1-preview"));
  preview($("verify-2"), $("verify-2-preview"));
  $("verify-form").addEventListener("submit", (event) => {
    event.preventDefault();
    verify();
  });
  if (state.key) login(state.key);
}

wire();
