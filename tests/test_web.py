"""The web page at /, driven in a real browser (Debian's chromium through Playwright) against
the real stack: log in with a key, recognise a group photo, enrol unknown faces and see
their names, review and name groups of unknown faces, delete a person. Names are shown as
text (a person named like an HTML tag stays a name), nothing is logged to the console as an
error, and the page works with the keyboard at phone width.

Screenshots of each page are written to a folder this module prints."""

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import images
import pytest
from helpers import add, finished, new_batch
from PIL import Image, ImageEnhance
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    FilePayload,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)
from stack import Stack

CHROMIUM = "/usr/bin/chromium"
# Headless, as root, on a machine with no network but loopback: no sandbox, no GPU, and none
# of Chromium's own background connections.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
XSS_NAME = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 60_000
PHONE = ViewportSize(width=390, height=844)
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is not installed (scripts/test.sh installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("web-screenshots")
    print(f"\nweb page screenshots: {folder}")
    return folder


class Watched:
    """A page whose console errors, uncaught exceptions and dialogs (an alert() would be
    an injected script running) are recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("dialog", self._dialog)
        page.set_default_timeout(TIMEOUT_MS)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context.new_page())
    yield watched
    context.close()


def gallery(api: httpx.Client) -> str:
    name = f"web-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/collections/{name}").status_code == 201
    return name


def log_in(page: Page, stack: Stack, collection: str) -> None:
    page.goto(f"{stack.url}/")
    page.get_by_label("API key", exact=True).fill(stack.admin_key)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    page.get_by_label("Gallery", exact=True).select_option(collection)


def photo(name: str, data: bytes) -> FilePayload:
    return FilePayload(name=name, mimeType="image/jpeg", buffer=data)


def test_page_is_served_with_a_strict_content_security_policy(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    # No inline script: every <script> has a src, no element has an on...= handler.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert not re.search(r"\son[a-z]+\s*=", page.text)
    for asset in ("app.js", "app.css"):
        response = httpx.get(f"{stack.url}/web/{asset}")
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == policy
    assert httpx.head(f"{stack.url}/").status_code == 200
    assert httpx.get(f"{stack.url}/web/..%2Fapp.py").status_code == 404
    assert httpx.get(f"{stack.url}/web/nothing.js").status_code == 404
    # The page is no API: it is not in the OpenAPI document.
    paths = httpx.get(f"{stack.url}/openapi.json").json()["paths"]
    assert "/" not in paths and "/web/{name}" not in paths


def test_recognise_enrol_recognise_again_and_delete(
    stack: Stack, api: httpx.Client, watched: Watched, shots: Path
) -> None:
    page = watched.page
    collection = gallery(api)
    log_in(page, stack, collection)
    # The key is kept for the tab only, and never in the address.
    assert stack.admin_key not in page.url
    assert page.evaluate("sessionStorage.getItem('facerec.apiKey')") == stack.admin_key

    page.get_by_label("Photo", exact=True).set_input_files(photo("team.jpg", images.group_photo()))
    boxes = page.locator(".frame .face")
    expect(boxes).to_have_count(6)
    expect(page.locator(".frame .face.unknown")).to_have_count(6)
    page.screenshot(path=shots / "recognise-unknown.png", full_page=True)

    # Enrol unknown faces as new people: one named like an HTML tag.
    for index, name in ((0, "Ada Lovelace"), (3, XSS_NAME)):
        boxes.nth(index).click()
        page.get_by_label("New person's name").fill(name)
        page.get_by_role("button", name="Add as a new person").click()
        expect(page.locator("#status")).to_have_text(
            f"Enrolled {name}. 6 faces found, {1 + (index > 0)} recognised."
        )
        if index == 0:
            # The candidates show on focus (and on hover).
            known = page.locator(".frame .face.known")
            known.focus()
            expect(known.locator(".candidates")).to_be_visible()
            expect(known.locator(".candidates li").first).to_contain_text("Ada Lovelace")
            page.screenshot(path=shots / "recognise.png", full_page=True)
    expect(page.locator(".frame .face.known")).to_have_count(2)
    expect(page.locator(".frame .face.unknown")).to_have_count(4)
    tags = page.locator(".frame .face.known .tag").all_text_contents()
    assert sorted(t.rsplit(" ", 1)[0] for t in tags) == sorted(["Ada Lovelace", XSS_NAME])
    # The name is text: no element was made of it, only the photo is an image in the frame.
    expect(page.locator(".frame img")).to_have_count(1)
    expect(page.get_by_role("button", name=f"Face 4: {XSS_NAME}")).to_have_count(1)
    page.screenshot(path=shots / "recognise-named.png", full_page=True)

    # An unknown face added to an existing person.
    boxes.nth(1).click()
    page.get_by_label("Existing person").select_option(label="Ada Lovelace")
    page.get_by_role("button", name="Add to this person").click()
    expect(page.locator("#status")).to_have_text(
        "Added the face to Ada Lovelace. 6 faces found, 3 recognised."
    )

    page.get_by_role("button", name="People", exact=True).click()
    cards = page.locator("#identities .card")
    expect(cards).to_have_count(2)
    expect(cards.locator("h3")).to_have_text(["Ada Lovelace", XSS_NAME])
    expect(cards.locator("img.thumb")).to_have_count(2)
    expect(cards.locator(".count")).to_have_text(["2 faces", "1 face"])
    page.screenshot(path=shots / "people.png", full_page=True)

    page.get_by_role("button", name=f"Delete {XSS_NAME}").click()
    expect(page.locator("#confirm")).to_contain_text(f"Delete {XSS_NAME} and erase 1 face?")
    page.locator("#confirm-ok").click()
    expect(page.locator("#status")).to_have_text(f"Deleted {XSS_NAME}: 1 face erased, 0 left.")
    expect(cards).to_have_count(1)
    expect(cards.locator("h3")).to_have_text(["Ada Lovelace"])
    # Nothing of the person is left: recognised again (at another threshold), the face is
    # unknown and no candidate has that name.
    page.get_by_role("button", name="Recognise", exact=True).click()
    page.get_by_label("Threshold", exact=True).fill("0.35")
    expect(page.locator("#status")).to_have_text("6 faces found, 2 recognised.")
    expect(page.locator(".frame .face.known .tag")).to_have_text(["Ada Lovelace 100%"] * 2)
    assert XSS_NAME not in "".join(page.locator(".frame .candidates").all_text_contents())
    names = [
        i["name"] for i in api.get(f"/v1/collections/{collection}/identities").json()["identities"]
    ]
    assert names == ["Ada Lovelace"]
    watched.clean()


def test_groups_of_unknown_faces_are_reviewed_and_named_at_phone_width(
    stack: Stack, api: httpx.Client, browser: Browser, shots: Path
) -> None:
    collection = f"web-{uuid.uuid4().hex[:8]}"
    batch = new_batch(api, collection, name="party")
    groups = [
        images.variant(images.group_photo(), flip=i == 1, scale=0.9 + 0.1 * i) for i in range(3)
    ]
    add(api, collection, batch, [(f"party{i}.jpg", p) for i, p in enumerate(groups)])
    api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    finished(api, collection, batch)

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        watched = Watched(context.new_page())
        page = watched.page
        page.goto(f"{stack.url}/")
        # Keyboard only: the key field is reached with Tab, the form sent with Enter.
        visited = []
        for _ in range(5):
            page.keyboard.press("Tab")
            visited.append(page.evaluate("document.activeElement.outerHTML.slice(0, 60)"))
            if page.evaluate("document.activeElement.id") == "api-key":
                break
        assert page.evaluate("document.activeElement.id") == "api-key", visited
        page.keyboard.type(stack.admin_key)
        page.keyboard.press("Enter")
        expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
        page.get_by_label("Gallery", exact=True).select_option(collection)

        page.get_by_role("button", name="Unknown faces").press("Enter")
        cards = page.locator("#groups .card")
        expect(cards).to_have_count(6)
        expect(cards.locator(".count")).to_have_text(["3 faces"] * 6)
        expect(cards.locator("img.thumb")).to_have_count(6)
        page.screenshot(path=shots / "unknown-faces.png", full_page=True)

        page.get_by_role("button", name="Review group 1").press("Enter")
        expect(page.locator("#group .grid img.thumb")).to_have_count(3)
        expect(page.get_by_label("Name this person")).to_be_focused()
        page.screenshot(path=shots / "unknown-group.png", full_page=True)
        page.keyboard.type("Grace Hopper")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_text("Named Grace Hopper: 3 faces enrolled.")
        expect(cards).to_have_count(5)

        # Merge two groups into one.
        page.get_by_role("button", name="Review group 1").click()
        page.get_by_role("button", name="Merge", exact=True).click()
        expect(page.locator("#status")).to_have_text("Merged.")
        expect(cards).to_have_count(4)
        expect(cards.locator(".count").first).to_have_text("6 faces")

        page.get_by_role("button", name="People", exact=True).click()
        person = page.locator("#identities .card")
        expect(person.locator("h3")).to_have_text(["Grace Hopper"])
        expect(person.locator(".count")).to_have_text(["3 faces"])
        # Phone width: nothing is wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        page.get_by_role("button", name="Batches").click()
        expect(page.locator("#batch-list li")).to_contain_text(["party done"])
        page.get_by_role("button", name="Results").click()
        expect(page.locator("#batch tbody tr")).to_have_count(3)
        page.screenshot(path=shots / "batches.png", full_page=True)

        # The same page on a wide screen, for the README.
        page.set_viewport_size(ViewportSize(width=1280, height=800))
        page.get_by_role("button", name="Unknown faces").click()
        expect(cards).to_have_count(4)
        page.get_by_role("button", name="Review group 1").click()
        expect(page.locator("#group .grid img.thumb")).to_have_count(6)
        page.screenshot(path=shots / "unknown-faces-wide.png", full_page=True)
        watched.clean()
    finally:
        context.close()


def test_verify_two_photos(stack: Stack, watched: Watched, shots: Path) -> None:
    page = watched.page
    page.goto(f"{stack.url}/")
    page.get_by_label("API key", exact=True).fill(stack.admin_key)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Verify", exact=True).click()
    page.get_by_label("First photo").set_input_files(photo("a.jpg", images.portrait()))
    flipped = images.variant(images.portrait(), flip=True, scale=0.8)
    page.get_by_label("Second photo").set_input_files(photo("b.jpg", flipped))
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#verdict")).to_contain_text("Same person: similarity")
    page.screenshot(path=shots / "verify.png", full_page=True)
    watched.clean()


def test_quality_is_shown_and_refused_photos_say_why(
    stack: Stack, api: httpx.Client, watched: Watched
) -> None:
    page = watched.page
    collection = gallery(api)
    created = api.post(f"/v1/collections/{collection}/identities", json={"name": "Yao Ming"})
    identity = created.json()["id"]
    log_in(page, stack, collection)
    page.get_by_label("Photo", exact=True).set_input_files(photo("yao.jpg", images.portrait()))
    quality = page.locator("ol.faces .quality")
    expect(quality).to_have_count(1)
    expect(quality).to_contain_text(re.compile(r"quality 0\.\d\d \(sharpness 0\.\d\d"))
    # A photo under the enrolment's default bar is refused, and the page says why.
    dark = io.BytesIO()
    source = Image.open(io.BytesIO(images.portrait())).convert("RGB")
    ImageEnhance.Brightness(source).enhance(0.05).save(dark, format="JPEG", quality=92)
    page.get_by_role("button", name="People", exact=True).click()
    page.locator(f"#add-{identity}").set_input_files(
        [photo("yao.jpg", images.portrait()), photo("dark.jpg", dark.getvalue())]
    )
    expect(page.locator("#status")).to_have_text("1 face added to Yao Ming, 1 refused (too dark).")
    watched.clean()
