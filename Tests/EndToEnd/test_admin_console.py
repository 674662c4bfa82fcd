"""The web admin console (`/admin`) in a real browser (headless Chromium driven by Selenium), used as a person
would: sign in and come back to the console, search for a user and disable them (their sign-in and their
password grant are then refused) and enable them again, create a client and use the secret shown once, rotate
it, and find that the old one stops working. Also: who may use the console (`admin`, `admin:read`, others get
403), CSRF and anti-framing headers, accessibility basics of every page (labels, 375 px width, keyboard),
and screenshots of each page for the docs (docs/screenshots/admin-*.png, overwritten on every run).

One server for the module, on its own database (a fresh SQLite file, or a fresh PostgreSQL database when the
suite runs on PostgreSQL), seeded with a little realistic data so the screenshots show something, and a
webhook receiver so the deliveries page has rows (it refuses the deliveries about `frank.ito`: one keeps failing).
"""

import json
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from conftest import BIN, ROOT, Browser, Gatehouse, Server, own_database, parse_page, query, unique, wait_until

SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP, MOBILE = (1280, 900), (375, 812)
HOOK_SECRET = "e2e-console-hook-" + secrets.token_hex(8)
NOT_ALLOWED = "Not allowed"


# --- headless Chromium (the same approach as test_browser.py) ------------------------------------------------------
def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find("chromium", "chromium-browser")
CHROMEDRIVER = _find("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)


def _new_driver():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium not installed (Debian packages chromium and chromium-driver; "
                    "scripts/test installs them when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                "--force-device-scale-factor=1", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    d.set_page_load_timeout(30)
    viewport(d, DESKTOP)
    return d


@pytest.fixture
def driver():
    d = _new_driver()
    try:
        yield d
    finally:
        d.quit()


def viewport(driver, size: tuple[int, int], mobile: bool = False) -> None:
    """Set the exact viewport size (the window size of headless Chrome includes its UI)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})


def screenshot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png")), name


def wait_for(driver, condition, what: str, timeout: float = 15):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, f"timed out waiting for {what}; at {driver.current_url}")


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def sign_in(driver, username: str, password: str) -> None:
    wait_for(driver, lambda d: css(d, "form#login-form"), "the login form")
    css(driver, "#login-form input[name=username]")[0].send_keys(username)
    css(driver, "#login-form input[name=password]")[0].send_keys(password)
    css(driver, "#login-form button[type=submit]")[0].click()


# --- console page helpers ---------------------------------------------------------------------------------------
def path_of(driver) -> str:
    return urlsplit(driver.current_url).path


def heading(driver) -> str:
    h = css(driver, "h1")
    return h[0].text.strip() if h else ""


def rows(driver, table: str) -> list[list[str]]:
    """The cell texts of each body row of `table#<table>` (the actions column included, as its text)."""
    return [[td.text.strip() for td in tr.find_elements("css selector", "td")]
            for tr in css(driver, f"table#{table} tbody tr")]


def column(driver, table: str, index: int = 0) -> list[str]:
    return [r[index] for r in rows(driver, table) if len(r) > index]


def facts(driver) -> dict[str, str]:
    """dt → dd of every `dl.facts` of the page (the first one wins)."""
    out: dict[str, str] = {}
    for dl in css(driver, "dl.facts"):
        dts, dds = dl.find_elements("css selector", "dt"), dl.find_elements("css selector", "dd")
        for dt, dd in zip(dts, dds):
            out.setdefault(dt.text.strip(), dd.text.strip())
    return out


def notice(driver) -> str:
    n = css(driver, "p.notice")
    return n[0].text.strip() if n else ""


def goto(driver, gh: Gatehouse, path: str, expect_heading: str | None = None) -> None:
    """Open a console page and wait until it is there (its heading, or the console's navigation)."""
    driver.get(gh.issuer + path)
    if expect_heading is not None:
        wait_for(driver, lambda d: heading(d) == expect_heading, f"the page {expect_heading!r} at {path}")
    else:
        wait_for(driver, lambda d: css(d, "nav.admin-nav") and heading(d), f"the console page {path}")


def click_link(driver, scope: str, text: str):
    """The link or button with exactly this text inside `scope` (a CSS selector), clicked."""
    candidates = [e for e in css(driver, f"{scope} a, {scope} button") if e.text.strip() == text]
    assert candidates, f"no link or button {text!r} in {scope} on {driver.current_url}: " + repr(
        [e.text for e in css(driver, f"{scope} a, {scope} button")])
    candidates[0].click()


def http_session(driver) -> requests.Session:
    """A requests session holding the browser's cookies (to see status codes and headers of the same user)."""
    s = requests.Session()
    for c in driver.get_cookies():
        s.cookies.set(c["name"], c["value"], path=c.get("path", "/"))
    return s


def open_console(driver, gh: Gatehouse, username: str, password: str, path: str = "/admin") -> None:
    """Open `path` signed out: the login page comes (returning to `path`); sign in; back at `path`."""
    driver.get(gh.issuer + path)
    wait_for(driver, lambda d: css(d, "form#login-form"), f"the login page instead of {path}")
    assert path_of(driver) == "/login", driver.current_url
    assert query(driver.current_url).get("return_to") == path, driver.current_url
    sign_in(driver, username, password)
    wait_for(driver, lambda d: path_of(d) == path and not css(d, "form#login-form") and heading(d),
             f"the way back to {path} after signing in")


# --- a webhook receiver -----------------------------------------------------------------------------------------
class HookReceiver:
    """Answers 204 to every delivery, except 503 to those mentioning a string of `refused` (a user id: the
    deliveries about that user fail)."""

    def __init__(self):
        self.bodies: list[tuple[int, dict]] = []
        self.refused: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                text = raw.decode(errors="replace")
                with receiver.lock:
                    status = 503 if any(r in text for r in receiver.refused) else 204
                    receiver.bodies.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gatehouse"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answered(self, status: int) -> int:
        with self.lock:
            return sum(1 for s, _ in self.bodies if s == status)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- the module's server and its data ---------------------------------------------------------------------------
PEOPLE = [
    # username, name, email, verified
    ("alice.martin", "Alice Martin", "alice.martin@example.com", True),    # admin
    ("bob.chen", "Bob Chen", "bob.chen@example.com", True),                # the user page screenshot
    ("carol.diaz", "Carol Díaz", "carol.diaz@example.com", False),
    ("dana.whitfield", "Dana Whitfield", "dana.whitfield@example.com", True),
    ("dave.okafor", "Dave Okafor", "dave.okafor@example.com", True),       # disabled and enabled again
    ("erin.walsh", "Erin Walsh", "erin.walsh@example.com", True),          # admin:read
    ("frank.ito", "Frank Ito", "frank.ito@example.com", False),            # no console permission
]


@dataclass
class Console:
    server: Server
    gh: Gatehouse
    hook: HookReceiver
    users: dict = field(default_factory=dict)      # username -> (user JSON, password)
    wiki: dict = field(default_factory=dict)       # a confidential client with the password grant
    mobile: dict = field(default_factory=dict)     # a public client

    def uid(self, username: str) -> str:
        return self.users[username][0]["id"]

    def creds(self, username: str) -> tuple[str, str]:
        return username, self.users[username][1]

    def exists(self, username: str) -> bool:
        return self.gh.run("users", "show", username).returncode == 0

    def password_token(self, username: str) -> requests.Response:
        return self.gh.token(self.wiki, grant_type="password", username=username,
                             password=self.users[username][1], scope="openid profile")

    def pages(self) -> dict[str, str]:
        """Every console page (a GET), by a short name."""
        bob = self.uid("bob.chen")
        return {
            "dashboard": "/admin", "users": "/admin/users", "user": f"/admin/users/{bob}",
            "clients": "/admin/clients", "client": f"/admin/clients/{self.wiki['client_id']}",
            "scopes": "/admin/scopes", "scope": "/admin/scopes/invoices", "groups": "/admin/groups",
            "group": "/admin/groups/engineering", "services": "/admin/services", "service": "/admin/services/billing",
            "providers": "/admin/providers", "keys": "/admin/keys", "events": "/admin/events", "audit": "/admin/audit",
            "confirm": f"/admin/users/{bob}/disable",
        }


def _seed(c: Console) -> None:
    gh = c.gh
    for username, name, email, verified in PEOPLE:
        password = secrets.token_urlsafe(15)
        args = ["users", "create", "--username", username, "--name", name, "--email", email]
        if verified:
            args.append("--email-verified")
        c.users[username] = (gh.cli(*args, "--password-stdin", stdin=password + "\n"), password)
    gh.cli("services", "grant", "gatehouse", "--user", "alice.martin", "--permission", "admin")
    gh.cli("services", "grant", "gatehouse", "--user", "erin.walsh", "--permission", "admin:read")
    gh.cli("groups", "create", "engineering")
    gh.cli("groups", "create", "support")
    gh.cli("groups", "add-member", "engineering", "bob.chen", "--role", "lead")
    gh.cli("groups", "add-member", "engineering", "carol.diaz")
    gh.cli("groups", "add-member", "engineering", "dave.okafor")
    gh.cli("groups", "add-member", "support", "erin.walsh", "--role", "lead")
    gh.cli("groups", "add-member", "support", "dana.whitfield")
    p = gh.run("scopes", "create", "invoices", "--description", "Read and pay your invoices")
    assert p.returncode == 0, p.stderr
    gh.cli("services", "create", "billing")
    gh.cli("services", "grant", "billing", "--user", "carol.diaz", "--permission", "invoices:read",
           "--permission", "invoices:approve")
    gh.cli("services", "grant", "billing", "--user", "dana.whitfield", "--permission", "invoices:read")
    c.wiki = gh.create_client(name="Team Wiki", scope="openid profile email invoices",
                              redirect_uris=["https://wiki.example.com/callback"], allow_password_grant=True)
    c.mobile = gh.create_client(name="Expenses (iOS)", scope="openid profile invoices", public=True,
                                redirect_uris=["com.example.expenses:/callback"])
    # Bob signs in on the web (a session) and through the wiki (a grant); one mistyped password first.
    # Frank signs in too: the webhook receiver refuses the deliveries about him.
    with c.hook.lock:
        c.hook.refused.add(c.uid("frank.ito"))
    Browser(gh).sign_in(*c.creds("frank.ito"))
    bob = Browser(gh)
    bob.sign_in("bob.chen", "not-my-password")
    r = bob.sign_in(*c.creds("bob.chen"))
    assert urlsplit(r.url).path == "/account", r.url
    r = c.password_token("bob.chen")
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    if not BIN.is_file():
        pytest.fail(f"gatehouse binary not found at {BIN}: run `swift build` or set GATEHOUSE_BIN")
    tmp = tmp_path_factory.mktemp("admin-console")
    hook = HookReceiver()
    try:
        with own_database(tmp) as database:
            server = Server(database, tmp, "--webhook-url", hook.url, "--webhook-secret", HOOK_SECRET,
                            "--webhook-retry-base", "1s")
            try:
                c = Console(server, server.gh, hook)
                _seed(c)
                yield c
            finally:
                server.stop()
    finally:
        hook.stop()


@pytest.fixture(scope="module")
def admin_driver(console):
    """One browser for the module's page-by-page checks, signed in to the console as alice.martin."""
    d = _new_driver()
    try:
        open_console(d, console.gh, *console.creds("alice.martin"))
        yield d
    finally:
        d.quit()


def signed_in(console: Console, username: str) -> Browser:
    """A second, requests-based browser with `username` signed in (it lands on the account page)."""
    b = Browser(console.gh)
    r = b.sign_in(*console.creds(username))
    assert r.status_code == 200 and urlsplit(r.url).path == "/account", (r.status_code, r.url)
    assert parse_page(r).text("#username") == username
    return b


def create_client_in_browser(driver, gh: Gatehouse, name: str, grant_types: str, scope: str = "") -> tuple[str, str]:
    """Fill in `#new-client` on the clients page; returns (client id, secret) as the secret page shows them."""
    goto(driver, gh, "/admin/clients", "Clients")
    css(driver, "#new-client input[name=name]")[0].send_keys(name)
    css(driver, "#new-client input[name=grant_types]")[0].send_keys(grant_types)
    if scope:
        css(driver, "#new-client input[name=scope]")[0].send_keys(scope)
    css(driver, "#new-client button[type=submit]")[0].click()
    wait_for(driver, lambda d: path_of(d) == "/admin/clients/secret" and css(d, "#client-secret"), "the secret page")
    return css(driver, "#client-id")[0].text.strip(), css(driver, "#client-secret")[0].text.strip()


# --- 1. disable and enable a user --------------------------------------------------------------------------------
def test_admin_finds_disables_and_enables_a_user(console, driver):
    gh = console.gh
    # Before: Dave signs in (a session in another browser) and his app gets tokens.
    daves_browser = signed_in(console, "dave.okafor")
    r = console.password_token("dave.okafor")
    assert r.status_code == 200, r.text

    # The administrator opens the console signed out: the login page, then back to the dashboard.
    open_console(driver, gh, *console.creds("alice.martin"))
    assert heading(driver) == "Dashboard"
    assert css(driver, 'nav.admin-nav a[aria-current="page"]')[0].text.strip() == "Dashboard"
    assert "alice.martin" in css(driver, "nav.admin-nav")[0].text

    # Users → search by prefix: "dav" finds Dave, not Dana (same first two letters) nor anybody else.
    click_link(driver, "nav.admin-nav", "Users")
    wait_for(driver, lambda d: heading(d) == "Users" and css(d, "table#users"), "the users page")
    assert "dave.okafor" in column(driver, "users") and "dana.whitfield" in column(driver, "users")
    search = css(driver, "#user-search input[name=query]")[0]
    search.send_keys("dav")
    css(driver, "#user-search button[type=submit]")[0].click()
    wait_for(driver, lambda d: query(d.current_url).get("query") == "dav" and css(d, "table#users"), "the search results")
    assert column(driver, "users") == ["dave.okafor"], rows(driver, "users")
    assert rows(driver, "users")[0][1:] == ["dave.okafor@example.com", "Dave Okafor", "active"], rows(driver, "users")
    assert css(driver, "#user-search input[name=query]")[0].get_attribute("value") == "dav"

    # Open Dave; Disable → the confirmation page → confirm.
    click_link(driver, "table#users", "dave.okafor")
    wait_for(driver, lambda d: heading(d) == "dave.okafor", "Dave's page")
    assert path_of(driver) == "/admin/users/" + console.uid("dave.okafor")
    assert facts(driver).get("Status") == "active", facts(driver)
    click_link(driver, "#user-actions", "Disable")
    wait_for(driver, lambda d: css(d, "form#confirm-form"), "the confirmation page")
    assert heading(driver) == "Disable dave.okafor"
    assert path_of(driver) == f"/admin/users/{console.uid('dave.okafor')}/disable"
    assert console.gh.cli("users", "show", "dave.okafor")["disabled"] is False, "disabled by the GET of the confirmation"
    cancel = [a for a in css(driver, "#confirm-form a") if a.text.strip() == "Cancel"]
    assert cancel and urlsplit(cancel[0].get_attribute("href")).path == "/admin/users/" + console.uid("dave.okafor")
    css(driver, "#confirm-form button[type=submit]")[0].click()
    wait_for(driver, lambda d: heading(d) == "dave.okafor" and notice(d), "Dave's page after disabling")
    assert notice(driver) == "The user is disabled and signed out everywhere."
    assert facts(driver).get("Status", "").startswith("disabled since"), facts(driver)
    assert css(driver, "p.lead")[0].text.strip() == "This account is disabled."
    assert console.gh.cli("users", "show", "dave.okafor")["disabled"] is True

    # Dave's existing session has ended, a new sign-in is refused, and so is the password grant.
    r = daves_browser.get("/account")
    assert parse_page(r).form("#login-form") is not None, f"Dave is still signed in: {r.url}"
    refused = Browser(gh)
    r = refused.sign_in(*console.creds("dave.okafor"))
    page = parse_page(r)
    assert page.form("#login-form") is not None, r.url
    assert "disabled" in (page.text(".alert") or ""), page.text(".alert")
    assert parse_page(refused.get("/account")).form("#login-form") is not None, "a session despite the refusal"
    r = console.password_token("dave.okafor")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text

    # The Status filter finds him among the disabled users.
    goto(driver, gh, "/admin/users?query=&disabled=true", "Users")
    assert column(driver, "users") == ["dave.okafor"], rows(driver, "users")
    selected = [o.text for o in css(driver, "#user-search select[name=disabled] option") if o.is_selected()]
    assert selected == ["Disabled"], selected

    # Enable again (a plain POST button): he signs in and gets tokens again.
    goto(driver, gh, "/admin/users/" + console.uid("dave.okafor"), "dave.okafor")
    click_link(driver, "#user-actions", "Enable")
    wait_for(driver, lambda d: notice(d) == "The user is enabled.", "Dave's page after enabling")
    assert facts(driver).get("Status") == "active", facts(driver)
    assert not css(driver, "p.lead"), "still says the account is disabled"
    signed_in(console, "dave.okafor")
    r = console.password_token("dave.okafor")
    assert r.status_code == 200, r.text


# --- 2. a client and its secret ----------------------------------------------------------------------------------
def test_admin_creates_a_client_uses_its_secret_once_and_rotates_it(console, driver):
    gh = console.gh
    open_console(driver, gh, *console.creds("alice.martin"), path="/admin/clients")
    assert heading(driver) == "Clients"
    client_id, secret = create_client_in_browser(driver, gh, "Billing worker", "client_credentials")
    assert heading(driver) == "Client Billing worker"
    assert client_id and len(secret) >= 32, (client_id, secret)

    # The shown secret works in a real client_credentials request (HTTP Basic).
    r = gh.token({"client_id": client_id}, secret, grant_type="client_credentials")
    assert r.status_code == 200, r.text
    claims = gh.decode(r.json()["access_token"])
    assert claims["client_id"] == client_id and claims["sub"] == client_id, claims

    # Shown once: a reload shows no secret.
    driver.refresh()
    wait_for(driver, lambda d: not css(d, "#client-secret") and heading(d), "the secret page reloaded")
    assert secret not in driver.page_source
    assert css(driver, ".alert") and "nothing to show" in css(driver, ".alert")[0].text.lower(), driver.page_source[:1500]

    # The clients list has it, with the grant type typed in the form.
    goto(driver, gh, "/admin/clients", "Clients")
    listed = {r[1]: r for r in rows(driver, "clients")}
    assert client_id in listed, rows(driver, "clients")
    assert listed[client_id][0] == "Billing worker" and listed[client_id][2] == "confidential", listed[client_id]
    assert listed[client_id][3] == "client_credentials", listed[client_id]

    # Rotate now (confirmation page): a new secret, shown once; the old one stops working at once.
    click_link(driver, "table#clients", "Billing worker")
    wait_for(driver, lambda d: heading(d) == "Billing worker", "the client's page")
    assert css(driver, "#client-form input[name=grant_types]")[0].get_attribute("value") == "client_credentials"
    click_link(driver, "#client-actions", "Rotate secret now")
    wait_for(driver, lambda d: css(d, "form#confirm-form"), "the rotation's confirmation page")
    assert heading(driver) == "Rotate the secret of Billing worker"
    assert gh.token({"client_id": client_id}, secret, grant_type="client_credentials").status_code == 200, \
        "the confirmation page's GET rotated the secret"
    css(driver, "#confirm-form button[type=submit]")[0].click()
    wait_for(driver, lambda d: path_of(d) == "/admin/clients/secret" and css(d, "#client-secret"), "the new secret")
    assert css(driver, "#client-id")[0].text.strip() == client_id
    new_secret = css(driver, "#client-secret")[0].text.strip()
    assert new_secret and new_secret != secret
    r = gh.token({"client_id": client_id}, secret, grant_type="client_credentials")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    r = gh.token({"client_id": client_id}, new_secret, grant_type="client_credentials")
    assert r.status_code == 200, r.text


# --- 3. screenshots for the docs (before the tests below add clients, keys and scopes) ------------------------
def test_screenshots_of_every_console_page(console, driver):
    gh = console.gh
    pages = console.pages()
    # The webhook deliveries exist: some delivered, the one about frank.ito refused.
    wait_until(lambda: console.hook.answered(204) and console.hook.answered(503),
               lambda: f"webhook deliveries (received {console.hook.bodies})", timeout=30)

    open_console(driver, gh, *console.creds("alice.martin"))
    assert heading(driver) == "Dashboard"
    assert re.fullmatch(r"\d+ \(\d+ disabled\)", facts(driver).get("Users", "")), facts(driver)
    failures = [[td.text.strip() for td in tr.find_elements("css selector", "td")]
                for tr in css(driver, "#failures table tbody tr")]
    assert any(r[1] == "bob.chen" for r in failures), f"Bob's mistyped password is not listed: {failures}"
    screenshot(driver, "admin-dashboard")

    goto(driver, gh, pages["users"], "Users")
    assert {"alice.martin", "bob.chen", "carol.diaz"} <= set(column(driver, "users")), rows(driver, "users")
    assert css(driver, "#new-user")
    screenshot(driver, "admin-users")
    viewport(driver, MOBILE, mobile=True)
    wait_for(driver, lambda d: d.execute_script("return window.innerWidth") <= MOBILE[0] + 1, "the phone viewport")
    screenshot(driver, "admin-users-mobile")
    viewport(driver, DESKTOP)

    goto(driver, gh, pages["user"], "bob.chen")
    assert column(driver, "groups") == ["engineering"], rows(driver, "groups")
    assert rows(driver, "sessions"), "Bob's session is not listed"
    assert set(column(driver, "grants")) == {console.wiki["client_id"]}, rows(driver, "grants")
    screenshot(driver, "admin-user")

    goto(driver, gh, pages["clients"], "Clients")
    assert {"Team Wiki", "Expenses (iOS)"} <= set(column(driver, "clients")), rows(driver, "clients")
    screenshot(driver, "admin-clients")

    create_client_in_browser(driver, gh, "Nightly reports", "client_credentials", "invoices")
    assert heading(driver) == "Client Nightly reports"
    screenshot(driver, "admin-client-secret")

    goto(driver, gh, pages["scopes"], "Scopes")
    assert "invoices" in column(driver, "scopes"), rows(driver, "scopes")
    screenshot(driver, "admin-scopes")

    goto(driver, gh, pages["groups"], "Groups")
    assert dict((r[0], r[1]) for r in rows(driver, "groups")) == {"engineering": "3", "support": "2"}, rows(driver, "groups")
    screenshot(driver, "admin-groups")
    goto(driver, gh, pages["group"], "Group engineering")
    assert dict((r[0], r[1]) for r in rows(driver, "members")) == \
        {"bob.chen": "lead", "carol.diaz": "member", "dave.okafor": "member"}, rows(driver, "members")
    screenshot(driver, "admin-group")

    goto(driver, gh, pages["services"], "Services")
    assert {"gatehouse", "billing"} <= set(column(driver, "services")), rows(driver, "services")
    screenshot(driver, "admin-services")
    goto(driver, gh, pages["service"], "Service billing")
    assert {r[0]: set(r[1].split()) for r in rows(driver, "permissions")} == \
        {"carol.diaz": {"invoices:read", "invoices:approve"}, "dana.whitfield": {"invoices:read"}}, rows(driver, "permissions")
    screenshot(driver, "admin-service")

    goto(driver, gh, pages["keys"], "Signing keys")
    assert rows(driver, "keys"), "no signing keys listed"
    screenshot(driver, "admin-keys")

    def deliveries_listed():
        driver.get(gh.issuer + pages["events"])
        statuses = column(driver, "events", 2)
        return "delivered" in statuses and any(s != "delivered" for s in statuses)

    wait_until(deliveries_listed, lambda: f"delivered and failing rows on the deliveries page: {rows(driver, 'events')}",
               timeout=30, interval=0.5)
    assert heading(driver) == "Webhook deliveries"
    failing = [r for r in rows(driver, "events") if r[2] != "delivered"]
    assert failing and failing[0][4], f"the refused delivery has no last error: {failing}"
    screenshot(driver, "admin-events")

    goto(driver, gh, pages["audit"], "Audit log")
    assert "client.created" in column(driver, "audit", 1), rows(driver, "audit")[:5]
    screenshot(driver, "admin-audit")

    goto(driver, gh, pages["confirm"], "Disable bob.chen")
    assert css(driver, "form#confirm-form")
    screenshot(driver, "admin-confirm")
    assert gh.cli("users", "show", "bob.chen")["disabled"] is False


def test_new_secret_never_travels_in_a_url(console):
    """The secret page is POST/Redirect/GET: the secret rides in a short-lived cookie scoped to that page."""
    gh = console.gh
    b = Browser(gh)
    b.sign_in(*console.creds("alice.martin"), parse_page(b.get("/admin/clients")))
    page = parse_page(b.get("/admin/clients"))
    form = page.form("#new-client")
    assert form is not None, page.response.text[:1500]
    r = b.session.post(gh.issuer + "/admin/clients", allow_redirects=False, timeout=30,
                       data={**form.fields, "name": "Cookie check", "grant_types": "client_credentials"})
    assert r.status_code == 303 and urlsplit(r.headers["Location"]).path == "/admin/clients/secret", \
        (r.status_code, r.headers.get("Location"))
    assert not urlsplit(r.headers["Location"]).query, r.headers["Location"]
    cookie = [c for c in r.raw.headers.getlist("Set-Cookie") if "admin_secret=" in c]
    assert cookie, r.headers.get("Set-Cookie")
    attrs = [a.strip().lower() for a in cookie[0].split(";")]
    assert "path=/admin/clients/secret" in attrs and "httponly" in attrs and "samesite=strict" in attrs, attrs
    max_age = [int(a.split("=")[1]) for a in attrs if a.startswith("max-age=")]
    assert max_age and 0 < max_age[0] <= 600, attrs
    shown = b.session.get(gh.issuer + "/admin/clients/secret", allow_redirects=False, timeout=30)
    assert shown.status_code == 200 and parse_page(shown).text("#client-secret"), shown.status_code
    assert "no-store" in shown.headers.get("Cache-Control", ""), shown.headers
    cleared = [c for c in shown.raw.headers.getlist("Set-Cookie") if "admin_secret=" in c]
    assert cleared and "max-age=0" in cleared[0].lower(), shown.headers.get("Set-Cookie")


# --- 4. who may use the console ----------------------------------------------------------------------------------
def assert_not_allowed(driver, what: str) -> None:
    wait_for(driver, lambda d: heading(d) == NOT_ALLOWED, f"the 403 page at {what}")
    assert not css(driver, "nav.admin-nav"), f"console navigation on the refusal at {what}"
    assert not css(driver, "table"), f"a table on the refusal at {what}"
    assert css(driver, ".error-code")[0].text.strip() == "access_denied"


def test_console_refuses_users_without_the_admin_permissions(console, driver):
    gh = console.gh
    # Frank holds no console permission: 403 on every page, nothing of the console shown.
    open_console(driver, gh, *console.creds("frank.ito"))
    assert_not_allowed(driver, "/admin")
    assert "may not use the administration console" in css(driver, ".alert")[0].text
    s = http_session(driver)
    for path in ("/admin", "/admin/users", "/admin/users/" + console.uid("bob.chen"), "/admin/clients"):
        r = s.get(gh.issuer + path, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (path, r.status_code, r.headers.get("Location"))
        assert "bob.chen" not in r.text
    goto(driver, gh, "/admin/users", NOT_ALLOWED)
    assert_not_allowed(driver, "/admin/users")

    # Erin holds admin:read: every page, no forms, no action buttons.
    driver.delete_all_cookies()
    open_console(driver, gh, *console.creds("erin.walsh"), path="/admin/users")
    assert heading(driver) == "Users"
    assert "read-only" in css(driver, "nav.admin-nav")[0].text
    assert "bob.chen" in column(driver, "users")
    assert not css(driver, "#new-user")
    for name, path in console.pages().items():
        driver.get(gh.issuer + path)
        if name == "confirm":
            assert_not_allowed(driver, path)
            assert "may look at the administration console but not change anything" in css(driver, ".alert")[0].text
            continue
        wait_for(driver, lambda d: css(d, "nav.admin-nav") and heading(d), f"the read-only page {path}")
        assert heading(driver) != NOT_ALLOWED, path
        posting = css(driver, "form[method=post]")
        assert not posting, f"{path}: POST forms for a read-only user: {[f.get_attribute('id') or f.get_attribute('action') for f in posting]}"
        assert not css(driver, "a.button, td.actions, button.danger"), f"{path}: action buttons for a read-only user"
    goto(driver, gh, "/admin/users/" + console.uid("bob.chen"), "bob.chen")
    assert not css(driver, "#user-actions, #profile-form, #password-form, #add-group")
    assert facts(driver).get("Username") == "bob.chen", facts(driver)

    # Changes are refused with 403 even with a valid CSRF token: a crafted form in the page, and plain requests.
    s = http_session(driver)
    csrf = s.cookies.get("gatehouse_csrf")
    assert csrf, [c["name"] for c in driver.get_cookies()]
    dave = console.uid("dave.okafor")
    r = s.get(gh.issuer + f"/admin/users/{dave}/disable", allow_redirects=False, timeout=30)
    assert r.status_code == 403, ("the confirmation page", r.status_code)
    goto(driver, gh, "/admin/users", "Users")
    driver.execute_script(
        """const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; f.id = 'crafted';
           for (const [k, v] of Object.entries(arguments[1])) {
             const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
           document.body.appendChild(f); f.submit();""",
        "/admin/users", {"csrf_token": csrf, "username": "mallory.crafted", "name": "Mallory"})
    assert_not_allowed(driver, "the crafted POST /admin/users")
    assert "not change anything" in css(driver, ".alert")[0].text
    for path, form in (("/admin/users", {"username": "mallory.requests"}),
                       (f"/admin/users/{dave}/disable", {"confirm": "yes"}),
                       (f"/admin/clients/{console.wiki['client_id']}/rotate", {"confirm": "yes"}),
                       ("/admin/groups", {"name": "mallory-group"})):
        r = s.post(gh.issuer + path, data={"csrf_token": csrf, **form}, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (path, r.status_code, r.text[:500])
    assert not console.exists("mallory.crafted") and not console.exists("mallory.requests")
    assert gh.cli("users", "show", "dave.okafor")["disabled"] is False
    assert "mallory-group" not in json.dumps(gh.cli("groups", "list"))
    r = console.gh.token(console.wiki, grant_type="password", username="bob.chen",
                         password=console.users["bob.chen"][1], scope="openid")
    assert r.status_code == 200, "the wiki's secret was rotated by a read-only user"


# --- 5. CSRF and framing -----------------------------------------------------------------------------------------
def test_console_forms_need_the_csrf_token_and_pages_forbid_framing(console):
    gh = console.gh
    b = Browser(gh)
    r = b.get("/admin/users")
    b.sign_in(*console.creds("alice.martin"), parse_page(r))
    page = parse_page(b.get("/admin/users"))
    form = page.form("#new-user")
    assert form is not None and form.fields.get("csrf_token"), page.response.text[:2000]
    token = form.fields["csrf_token"]
    url = gh.issuer + "/admin/users"
    attempts = {
        "no token": ({"username": "nocsrf.one"}, b.session),
        "another token": ({"username": "nocsrf.two", "csrf_token": secrets.token_urlsafe(32)}, b.session),
        "an empty token": ({"username": "nocsrf.three", "csrf_token": ""}, b.session),
    }
    # A page of another site posting with the token it saw but without the CSRF cookie (only the session's).
    cookieless = requests.Session()
    cookieless.cookies.set("gatehouse_session", b.session.cookies.get("gatehouse_session"))
    assert cookieless.cookies.get("gatehouse_session")
    attempts["the token without its cookie"] = ({"username": "nocsrf.four", "csrf_token": token}, cookieless)
    for what, (data, session) in attempts.items():
        r = session.post(url, data=data, allow_redirects=False, timeout=30)
        assert r.status_code in (400, 403), (what, r.status_code, r.headers.get("Location"))
        assert "form expired" in r.text, (what, r.text[:1000])
        assert not console.exists(data["username"]), f"{what}: the user was created"
    # The same form with its token works (so the refusals above were the token's doing).
    r = b.session.post(url, data={"username": "henry.adams", "name": "Henry Adams", "email": "henry.adams@example.com",
                                  "csrf_token": token}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, (r.status_code, r.text[:1000])
    henry = gh.cli("users", "show", "henry.adams")
    assert urlsplit(r.headers["Location"]).path == "/admin/users/" + henry["id"]
    assert henry["name"] == "Henry Adams" and henry["has_password"] is False, henry

    # Every console page (and the refusals) forbids framing and caching.
    responses = {path: b.session.get(gh.issuer + path, allow_redirects=False, timeout=30)
                 for path in console.pages().values()}
    responses["login redirect"] = requests.get(gh.issuer + "/admin/users", allow_redirects=False, timeout=30)
    responses["CSRF refusal"] = b.session.post(url, data={"username": "nocsrf.five"}, allow_redirects=False, timeout=30)
    frank = Browser(gh)
    frank.sign_in(*console.creds("frank.ito"))
    responses["403 page"] = frank.session.get(gh.issuer + "/admin", allow_redirects=False, timeout=30)
    assert responses["login redirect"].status_code == 303 and responses["403 page"].status_code == 403
    for what, r in responses.items():
        if what not in ("login redirect", "CSRF refusal", "403 page"):
            assert r.status_code == 200, (what, r.status_code)
        assert r.headers.get("X-Frame-Options") == "DENY", (what, r.headers)
        directives = [d.strip() for d in r.headers.get("Content-Security-Policy", "").split(";")]
        assert "frame-ancestors 'none'" in directives, (what, r.headers.get("Content-Security-Policy"))
        assert "no-store" in r.headers.get("Cache-Control", ""), (what, r.headers.get("Cache-Control"))


# --- 6. every other form of the console, through the browser ---------------------------------------------------------
def fill(driver, form_id: str, values: dict) -> None:
    """Type `values` into the fields of `form#<form_id>` (True/False for checkboxes, an option value for selects)
    and submit it with its button."""
    from selenium.webdriver.support.ui import Select

    for name, value in values.items():
        found = css(driver, f"form#{form_id} [name='{name}']")
        assert found, f"no field {name} in #{form_id} on {driver.current_url}"
        el = found[0]
        if el.get_attribute("type") == "checkbox":
            if el.is_selected() != bool(value):
                el.click()
        elif el.tag_name == "select":
            Select(el).select_by_value(value)
        else:
            el.clear()
            el.send_keys(value)
    css(driver, f"form#{form_id} button[type=submit]")[0].click()


def confirm(driver, heading_text: str) -> None:
    """On a confirmation page: check its heading, then confirm."""
    wait_for(driver, lambda d: css(d, "form#confirm-form"), f"the confirmation {heading_text!r}")
    assert heading(driver) == heading_text, heading(driver)
    css(driver, "#confirm-form button[type=submit]")[0].click()


def wait_notice(driver, text: str, path: str | None = None) -> None:
    wait_for(driver, lambda d: notice(d) == text and (path is None or path_of(d) == path),
             f"the notice {text!r}" + (f" at {path}" if path else ""))


def test_user_forms_create_edit_and_delete_a_user(console, admin_driver):
    d, gh = admin_driver, console.gh
    viewport(d, DESKTOP)
    goto(d, gh, "/admin/users", "Users")
    password = secrets.token_urlsafe(12)
    fill(d, "new-user", {"username": "ivy.nguyen", "email": "ivy.nguyen@example.com", "email_verified": True,
                         "name": "Ivy Nguyen", "password": password})
    wait_for(d, lambda x: heading(x) == "ivy.nguyen", "the new user's page")
    ivy = gh.cli("users", "show", "ivy.nguyen")
    assert path_of(d) == "/admin/users/" + ivy["id"]
    assert (ivy["email"], ivy["email_verified"], ivy["name"], ivy["has_password"]) == \
        ("ivy.nguyen@example.com", True, "Ivy Nguyen", True), ivy

    # Profile: the claims, the postal address in a textarea; unticking "verified" sticks.
    fill(d, "profile-form", {"given_name": "Ivy", "family_name": "Nguyen", "phone_number": "+1 555 0100",
                             "address": "1 Main Street\nSpringfield", "email_verified": False})
    wait_notice(d, "Saved.", "/admin/users/" + ivy["id"])
    ivy = gh.cli("users", "show", "ivy.nguyen")
    assert (ivy["given_name"], ivy["family_name"], ivy["phone_number"], ivy["email_verified"]) == \
        ("Ivy", "Nguyen", "+1 555 0100", False), ivy
    assert "Springfield" in json.dumps(ivy["address"]), ivy["address"]
    assert css(d, "#profile-form input[name=given_name]")[0].get_attribute("value") == "Ivy"

    # She signs in (a session appears on her page); a new password must be changed and ends her sessions.
    ivys_browser = Browser(gh)
    ivys_browser.sign_in("ivy.nguyen", password)
    goto(d, gh, "/admin/users/" + ivy["id"], "ivy.nguyen")
    assert len(rows(d, "sessions")) == 1, rows(d, "sessions")
    new_password = secrets.token_urlsafe(12)
    fill(d, "password-form", {"password": new_password, "require_reset": True})
    wait_notice(d, "The password is changed; the user's sessions ended.")
    assert facts(d).get("Password") == "set; must be changed at the next sign-in", facts(d)
    assert not rows(d, "sessions"), rows(d, "sessions")
    assert parse_page(ivys_browser.get("/account")).form("#login-form") is not None, "her session survived"

    # Groups: add her to one from her page, then remove her through the confirmation page.
    fill(d, "add-group", {"group": "support", "role": "member"})
    wait_notice(d, "Saved.")
    assert dict((r[0], r[1]) for r in rows(d, "groups")) == {"support": "member"}, rows(d, "groups")
    click_link(d, "table#groups", "Remove")
    confirm(d, "Remove ivy.nguyen from support")
    wait_notice(d, "Removed.", "/admin/groups/support")
    assert "ivy.nguyen" not in column(d, "members"), rows(d, "members")

    # A new session, ended from her page ("End" → confirmation).
    goto(d, gh, "/admin/users/" + ivy["id"], "ivy.nguyen")
    fill(d, "password-form", {"password": password, "require_reset": False})
    wait_notice(d, "The password is changed; the user's sessions ended.")
    assert facts(d).get("Password") == "set", facts(d)
    ivys_browser = Browser(gh)
    ivys_browser.sign_in("ivy.nguyen", password)
    assert urlsplit(ivys_browser.history[-1].url).path == "/account", ivys_browser.history[-1].url
    goto(d, gh, "/admin/users/" + ivy["id"], "ivy.nguyen")
    assert len(rows(d, "sessions")) == 1, rows(d, "sessions")
    click_link(d, "table#sessions", "End")
    confirm(d, "End this session")
    wait_notice(d, "The session ended.", "/admin/users/" + ivy["id"])
    assert not rows(d, "sessions")
    assert parse_page(ivys_browser.get("/account")).form("#login-form") is not None, "the ended session still works"

    # Delete (confirmation page): gone from the list.
    click_link(d, "#user-actions", "Delete")
    confirm(d, "Delete ivy.nguyen")
    wait_notice(d, "Deleted.", "/admin/users")
    assert "ivy.nguyen" not in column(d, "users")
    assert not console.exists("ivy.nguyen")


def test_group_scope_and_service_forms(console, admin_driver):
    d, gh = admin_driver, console.gh
    viewport(d, DESKTOP)
    # A group with a member, then deleted.
    goto(d, gh, "/admin/groups", "Groups")
    fill(d, "new-group", {"name": "design"})
    wait_for(d, lambda x: heading(x) == "Group design", "the new group's page")
    fill(d, "add-member", {"user": "carol.diaz", "role": "lead"})
    wait_notice(d, "Saved.", "/admin/groups/design")
    assert dict((r[0], r[1]) for r in rows(d, "members")) == {"carol.diaz": "lead"}, rows(d, "members")
    fill(d, "add-member", {"user": console.uid("bob.chen")})   # by user id, default role
    wait_for(d, lambda x: len(rows(x, "members")) == 2, "the second member")
    assert dict((r[0], r[1]) for r in rows(d, "members")) == {"carol.diaz": "lead", "bob.chen": "member"}
    click_link(d, "main", "Delete group")
    confirm(d, "Delete the group design")
    wait_notice(d, "Deleted.", "/admin/groups")
    assert "design" not in column(d, "groups")

    # A scope: created as a default scope, its description edited, then deleted.
    goto(d, gh, "/admin/scopes", "Scopes")
    fill(d, "new-scope", {"name": "reports", "description": "Read your reports", "default": True,
                          "required_role": "lead"})
    wait_notice(d, "Saved.", "/admin/scopes")
    listed = {r[0]: r for r in rows(d, "scopes")}
    assert listed.get("reports", [])[1:4] == ["Read your reports", "yes", "lead"], listed.get("reports")
    click_link(d, "table#scopes", "reports")
    wait_for(d, lambda x: heading(x) == "Scope reports", "the scope's page")
    fill(d, "scope-form", {"description": "Read the team's reports", "default": False, "required_role": ""})
    wait_notice(d, "Saved.", "/admin/scopes")
    listed = {r[0]: r for r in rows(d, "scopes")}
    assert listed["reports"][1:4] == ["Read the team's reports", "", ""], listed["reports"]
    goto(d, gh, "/admin/scopes/reports/delete", "Delete the scope reports")
    confirm(d, "Delete the scope reports")
    wait_notice(d, "Deleted.", "/admin/scopes")
    assert "reports" not in column(d, "scopes")

    # A service: permissions granted, revoked, the service deleted.
    goto(d, gh, "/admin/services", "Services")
    fill(d, "new-service", {"name": "analytics"})
    wait_for(d, lambda x: heading(x) == "Service analytics", "the new service's page")
    fill(d, "grant-form", {"user": "dana.whitfield", "permissions": "dashboards:view dashboards:edit"})
    wait_notice(d, "Saved.", "/admin/services/analytics")
    assert {r[0]: set(r[1].split()) for r in rows(d, "permissions")} == \
        {"dana.whitfield": {"dashboards:view", "dashboards:edit"}}, rows(d, "permissions")
    click_link(d, "table#permissions", "Revoke all")
    confirm(d, "Revoke dana.whitfield's permissions")
    wait_notice(d, "Revoked.", "/admin/services/analytics")
    assert not rows(d, "permissions")
    click_link(d, "main", "Delete service")
    confirm(d, "Delete the service analytics")
    wait_notice(d, "Deleted.", "/admin/services")
    assert "analytics" not in column(d, "services")


def test_client_key_and_delivery_forms(console, admin_driver):
    d, gh = admin_driver, console.gh
    viewport(d, DESKTOP)
    # A public client (no secret page: straight to its page), edited, then deleted.
    goto(d, gh, "/admin/clients", "Clients")
    fill(d, "new-client", {"name": "Kiosk", "redirect_uris": "http://127.0.0.1/callback", "public": True,
                           "scope": "openid profile"})
    wait_for(d, lambda x: heading(x) == "Kiosk", "the public client's page")
    assert not css(d, "#client-secret")
    client_id = facts(d)["Client ID"]
    assert facts(d)["Type"] == "public"
    assert not [a for a in css(d, "#client-actions a") if a.text.startswith("Rotate")], "rotation for a public client"
    # A public client's form offers no "skip consent"; a crafted form that asks for it anyway is refused: a
    # page says why, with a way back; nothing changes.
    assert not css(d, "form#client-form [name='skip_consent']"), "skip consent offered for a public client"
    d.execute_script(
        "const f = document.getElementById('client-form'); const i = document.createElement('input');"
        "i.type = 'hidden'; i.name = 'skip_consent'; i.value = 'true'; f.appendChild(i);")
    fill(d, "client-form", {"name": "Sneaky kiosk"})
    wait_for(d, lambda x: heading(x) == "The change was not made", "the refusal page")
    assert css(d, "p.alert") and css(d, "p.alert")[0].text.strip(), "no reason given"
    assert [a for a in css(d, "main a") if a.text.strip() == "Back"], "no way back"
    assert gh.cli("clients", "show", client_id)["name"] == "Kiosk"
    goto(d, gh, "/admin/clients/" + client_id, "Kiosk")
    fill(d, "client-form", {"name": "Lobby kiosk",
                            "redirect_uris": "http://127.0.0.1/callback\nhttp://127.0.0.1:8400/callback"})
    wait_notice(d, "Saved.", "/admin/clients/" + client_id)
    assert heading(d) == "Lobby kiosk"
    shown = gh.cli("clients", "show", client_id)
    assert set(shown["redirect_uris"]) == {"http://127.0.0.1/callback", "http://127.0.0.1:8400/callback"}, shown
    assert css(d, "#client-form textarea[name=redirect_uris]")[0].get_attribute("value").split("\n") == \
        ["http://127.0.0.1/callback", "http://127.0.0.1:8400/callback"]
    click_link(d, "#client-actions", "Delete")
    confirm(d, "Delete Lobby kiosk")
    wait_notice(d, "Deleted.", "/admin/clients")
    assert client_id not in column(d, "clients", 1)

    # Rotation with a grace period: both secrets work, the page says until when.
    client_id, secret = create_client_in_browser(d, gh, "Grace worker", "client_credentials")
    goto(d, gh, "/admin/clients/" + client_id, "Grace worker")
    click_link(d, "#client-actions", "Rotate secret (old one keeps working 1 h)")
    wait_for(d, lambda x: css(x, "form#confirm-form"), "the rotation's confirmation")
    assert "60 minutes" in css(d, "p.lead")[0].text, css(d, "p.lead")[0].text
    confirm(d, "Rotate the secret of Grace worker")
    wait_for(d, lambda x: css(x, "#client-secret"), "the new secret")
    new_secret = css(d, "#client-secret")[0].text.strip()
    for s in (secret, new_secret):
        r = gh.token({"client_id": client_id}, s, grant_type="client_credentials")
        assert r.status_code == 200, r.text
    goto(d, gh, "/admin/clients/" + client_id, "Grace worker")
    assert facts(d).get("Previous secret", "").startswith("valid until"), facts(d)

    # Keys: rotate (a second key is published), with an algorithm chosen in the select.
    goto(d, gh, "/admin/keys", "Signing keys")
    before = rows(d, "keys")
    fill(d, "rotate-form", {"algorithm": "RS256"})
    wait_notice(d, "A new signing key is published.", "/admin/keys")
    after = rows(d, "keys")
    assert len(after) == len(before) + 1 and "RS256" in column(d, "keys", 1), after

    # Webhooks: "Retry now" on the delivery the receiver refuses.
    goto(d, gh, "/admin/events?status=pending", "Webhook deliveries")
    wait_until(lambda: d.refresh() or css(d, "table#events form.inline button"),
               "a pending delivery with a Retry button", timeout=30, interval=0.5)
    css(d, "table#events form.inline button")[0].click()
    wait_notice(d, "The delivery is due again.", "/admin/events")


# --- 7. accessibility basics -------------------------------------------------------------------------------------
UNLABELLED_JS = """
const out = [];
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden') continue;
  const box = el.getBoundingClientRect();
  if (box.width === 0 && box.height === 0) continue;
  const labels = el.id ? [...document.querySelectorAll('label')].filter(l => l.htmlFor === el.id) : [];
  const forLabel = labels.some(l => l.textContent.trim().length > 0);
  const around = el.type === 'checkbox' && el.closest('label') && el.closest('label').textContent.trim().length > 0;
  if (!forLabel && !around) out.push(el.outerHTML);
}
return out;
"""

DUPLICATE_IDS_JS = """
const seen = {}; for (const el of document.querySelectorAll('[id]')) seen[el.id] = (seen[el.id] || 0) + 1;
return Object.keys(seen).filter(k => seen[k] > 1);
"""

NAMELESS_JS = """
return [...document.querySelectorAll('a, button')].filter(e => {
  const b = e.getBoundingClientRect(); return b.width > 0 && !(e.textContent.trim() || e.getAttribute('aria-label'));
}).map(e => e.outerHTML);
"""

# Elements sticking out of the viewport, other than those a scrolling .table-wrap keeps inside it (an absolutely
# positioned element escapes a wrap that is not itself positioned: it is not clipped by it).
OVERFLOW_JS = """
const w = window.innerWidth; const out = [];
function clippedByWrap(el) {
  const wrap = el.closest('.table-wrap'); if (!wrap) return false;
  for (let n = el; n && n !== wrap; n = n.parentElement) {
    const p = getComputedStyle(n).position;
    if (p === 'fixed') return false;
    if (p === 'absolute') {
      for (let a = n.parentElement; a; a = a.parentElement) {
        if (getComputedStyle(a).position !== 'static') { if (a === wrap || wrap.contains(a)) break; return false; }
        if (a === wrap) return false;
      }
    }
  }
  return true;
}
for (const el of document.querySelectorAll('main *')) {
  if (clippedByWrap(el)) continue;
  const b = el.getBoundingClientRect();
  if (b.width > 0 && b.right > w + 1) {
    out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + String(el.className).split(' ').join('.') : '')
             + ' right=' + Math.round(b.right) + ' text=' + JSON.stringify((el.textContent || '').trim().slice(0, 40)));
  }
}
return out.slice(0, 15);
"""

ACCESSIBILITY_PAGES = ["dashboard", "users", "user", "clients", "client", "client-secret", "scopes", "scope", "groups",
                       "group", "services", "service", "providers", "keys", "events", "audit", "confirm"]


@pytest.mark.parametrize("name", ACCESSIBILITY_PAGES)
def test_page_has_labels_fits_375px_and_works_with_the_keyboard(console, admin_driver, name):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d, gh = admin_driver, console.gh
    viewport(d, DESKTOP)
    if name == "client-secret":
        create_client_in_browser(d, gh, "Accessibility check " + unique(""), "client_credentials")
        # The worst case for the layout: a secret without "-" (about half of them), where a browser may not wrap.
        d.execute_script("const e = document.getElementById('client-secret');"
                         "e.textContent = e.textContent.trim().replace(/-/g, 'A');")
    else:
        goto(d, gh, console.pages()[name])
    where = f"{name} ({path_of(d)})"
    assert heading(d) and heading(d) != NOT_ALLOWED, where
    assert d.execute_script("return document.documentElement.lang") == "en", where
    assert d.title.strip(), where
    assert len(css(d, "h1")) == 1, f"{where}: {len(css(d, 'h1'))} h1 elements"

    # Labels: every visible field has a <label for> (a checkbox may sit inside its label); ids are unique.
    unlabelled = d.execute_script(UNLABELLED_JS)
    assert not unlabelled, f"{where}: fields without a label: {unlabelled}"
    duplicates = d.execute_script(DUPLICATE_IDS_JS)
    assert not duplicates, f"{where}: duplicate ids {duplicates}"
    nameless = d.execute_script(NAMELESS_JS)
    assert not nameless, f"{where}: links or buttons without text: {nameless}"

    # Keyboard: Tab from the top of the page reaches the first navigation link, visibly focused.
    d.execute_script("if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0);")
    first = css(d, "nav.admin-nav a")[0]
    reached = False
    for _ in range(3):
        ActionChains(d).send_keys(Keys.TAB).perform()
        if d.execute_script("return document.activeElement === arguments[0]", first):
            reached = True
            break
    assert reached, f"{where}: three Tabs did not reach the first nav link; focus on " + str(
        d.execute_script("return document.activeElement && document.activeElement.outerHTML"))
    assert first.text.strip() == "Dashboard", where
    outline = d.execute_script("const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]")
    assert outline[0] != "none" and outline[1] != "0px", f"{where}: no visible focus on the nav link: {outline}"
    current = css(d, 'nav.admin-nav a[aria-current="page"]')
    assert len(current) == 1, f"{where}: {len(current)} nav links marked aria-current"

    # 375 px: nothing wider than the screen; wide tables scroll inside their .table-wrap.
    viewport(d, MOBILE)
    try:
        wait_for(d, lambda x: x.execute_script("return window.innerWidth") == MOBILE[0], "the 375 px viewport", timeout=5)
        sizes = d.execute_script(
            "const m = document.querySelector('main.card').getBoundingClientRect();"
            "return [document.documentElement.scrollWidth, window.innerWidth, Math.round(m.left), Math.round(m.right)]")
        sticking_out = d.execute_script(OVERFLOW_JS)
        assert sizes[0] <= sizes[1] + 1 and sizes[2] >= 0 and sizes[3] <= sizes[1] + 1, \
            f"{where}: wider than 375 px (scrollWidth, innerWidth, card left, card right) = {sizes}; sticking out: {sticking_out}"
        assert not sticking_out, f"{where}: elements wider than the 375 px screen: {sticking_out}"
        for wrap in css(d, ".table-wrap"):
            overflow = d.execute_script("return getComputedStyle(arguments[0]).overflowX", wrap)
            assert overflow in ("auto", "scroll"), f"{where}: a .table-wrap that does not scroll ({overflow})"
    finally:
        viewport(d, DESKTOP)


FILTER_LAYOUT_JS = """
const form = document.getElementById(arguments[0]); const out = {fields: [], problems: []};
const box = e => { const b = e.getBoundingClientRect(); return {left: Math.round(b.left), top: Math.round(b.top),
                                                                  bottom: Math.round(b.bottom)}; };
for (const field of form.querySelectorAll('input:not([type=hidden]), select')) {
  const label = form.querySelector('label[for="' + field.id + '"]'); const f = box(field);
  out.fields.push(f);
  if (!label) { out.problems.push(field.name + ': no label'); continue; }
  const l = box(label);
  if (Math.abs(l.left - f.left) > 2 || l.bottom > f.top + 1 || f.top - l.bottom > 24)
    out.problems.push(`${field.name}: its label is not right above it (label ${JSON.stringify(l)}, field ${JSON.stringify(f)})`);
  const help = field.nextElementSibling;
  if (help && help.matches('p.fine')) {
    const h = box(help);
    if (Math.abs(h.left - f.left) > 2 || h.top < f.bottom - 1 || h.top - f.bottom > 24)
      out.problems.push(`${field.name}: its help text is not right below it (help ${JSON.stringify(h)}, field ${JSON.stringify(f)})`);
  }
}
return out;
"""


@pytest.mark.parametrize("form_id, path", [("user-search", "/admin/users"), ("event-filter", "/admin/events"),
                                           ("audit-filter", "/admin/audit")])
def test_list_filters_are_laid_out_in_a_row(console, admin_driver, form_id, path):
    """The list filters are `inline` forms ("laid out in a row"): at 1280 px their fields share rows, each with
    its label right above it and its help text right below it."""
    d = admin_driver
    viewport(d, DESKTOP)
    goto(d, console.gh, path)
    layout = d.execute_script(FILTER_LAYOUT_JS, form_id)
    assert not layout["problems"], f"#{form_id} on {path}: {layout['problems']}"
    fields = layout["fields"]
    rows_used = len({f["top"] for f in fields})
    assert len(fields) == 1 or rows_used < len(fields), \
        f"#{form_id} on {path}: {len(fields)} fields on {rows_used} rows, one per row (not laid out in a row): {fields}"
    submit = css(d, f"#{form_id} button[type=submit]")[0].rect
    assert submit["y"] < max(f["bottom"] for f in fields) + 40, f"#{form_id}: the button is far below the fields"
