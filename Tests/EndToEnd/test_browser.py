"""Proves the sign-in pages work in a real browser (headless Chromium driven by Selenium, no JavaScript
needed): the login form, the consent page and the redirect back to an app on a loopback port, the
error page for an unknown client, and the account page. Saves screenshots of each page to
docs/screenshots/ (overwritten on every run)."""

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from conftest import ROOT, query, unique

SCREENSHOTS = ROOT / "docs" / "screenshots"
WIDE, NARROW = (1100, 800), (400, 800)


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find("chromium", "chromium-browser")
CHROMEDRIVER = _find("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)


@pytest.fixture
def driver():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium not installed (Debian packages chromium and chromium-driver; "
                    "scripts/test installs them when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                "--force-device-scale-factor=1", f"--window-size={WIDE[0]},{WIDE[1]}"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    d.set_page_load_timeout(30)
    viewport(d, WIDE)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def app():
    """A stand-in for the client's web app: answers 200 "ok" on http://127.0.0.1:PORT/callback and
    records the paths it was asked for."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback", seen
    finally:
        server.shutdown()
        server.server_close()


def viewport(driver, size: tuple[int, int], mobile: bool = False) -> None:
    """Set the exact viewport size (the window size of headless Chrome includes its UI)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})


def screenshot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png")), name


def wait_for(driver, condition, what: str, timeout: float = 15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, f"timed out waiting for {what}; at {driver.current_url}")


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def authorize_url(gh, client: dict, redirect_uri: str, scope: str) -> tuple[str, str, str]:
    """An authorization request URL, its state and its PKCE code verifier."""
    state, verifier = generate_token(16), generate_token(48)
    params = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect_uri,
              "scope": scope, "state": state, "nonce": generate_token(16),
              "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
    return gh.issuer + "/oauth2/authorize?" + urlencode(params), state, verifier


def sign_in(driver, username: str, password: str) -> None:
    wait_for(driver, lambda d: css(d, "form#login-form"), "the login form")
    css(driver, "#login-form input[name=username]")[0].send_keys(username)
    css(driver, "#login-form input[name=password]")[0].send_keys(password)
    css(driver, "#login-form button[type=submit]")[0].click()


def test_sign_in_consent_and_back_to_the_app(gh, driver, app):
    callback, seen = app
    scope = "openid profile email"
    client = gh.create_client(scope=scope, redirect_uris=[callback], name="Photo Album")
    user, password = gh.create_user(email=unique("mail") + "@example.com", name="Grace Hopper")
    url, state, verifier = authorize_url(gh, client, callback, scope)

    driver.get(url)
    wait_for(driver, lambda d: css(d, "form#login-form"), "the login page")
    assert css(driver, "#login-form input[name=password][type=password]")
    screenshot(driver, "login")
    viewport(driver, NARROW, mobile=True)
    screenshot(driver, "login-mobile")
    viewport(driver, WIDE)

    sign_in(driver, user["username"], password)
    wait_for(driver, lambda d: css(d, "form#consent-form"), "the consent page")
    scopes = [li.get_attribute("data-scope") for li in css(driver, "li[data-scope]")]
    assert set(scopes) == set(scope.split()), scopes
    assert "Photo Album" in driver.page_source
    screenshot(driver, "consent")

    css(driver, "#consent-form button[name=decision][value=allow]")[0].click()
    wait_for(driver, lambda d: d.current_url.startswith(callback + "?"), "the redirect to the app")
    params = query(driver.current_url)
    assert params.get("code"), params
    assert params["state"] == state and params["iss"] == gh.issuer, params
    assert "ok" in driver.page_source
    assert any(urlsplit(p).path == "/callback" and "code=" in p for p in seen), seen
    # The app redeems the code.
    r = gh.token(client, grant_type="authorization_code", code=params["code"], redirect_uri=callback,
                 code_verifier=verifier)
    assert r.status_code == 200, r.text
    assert r.json()["id_token"]


def test_error_page_for_unknown_client(gh, driver):
    client = {"client_id": unique("nosuch")}
    url, _, _ = authorize_url(gh, client, "https://rp.example.com/callback", "openid")
    driver.get(url)
    wait_for(driver, lambda d: css(d, ".error-code"), "the error page")
    assert urlsplit(driver.current_url).netloc == urlsplit(gh.issuer).netloc, driver.current_url
    assert css(driver, "h1")[0].text.strip()
    assert css(driver, ".error-code")[0].text.strip() == "invalid_request"
    screenshot(driver, "error")


def test_account_page_lists_apps_and_signs_out(gh, driver, app):
    callback, _ = app
    client = gh.create_client(scope="openid profile", redirect_uris=[callback], name="Notes")
    user, password = gh.create_user()
    url, _, verifier = authorize_url(gh, client, callback, "openid profile")
    driver.get(url)
    sign_in(driver, user["username"], password)
    wait_for(driver, lambda d: css(d, "form#consent-form"), "the consent page")
    css(driver, "#consent-form button[name=decision][value=allow]")[0].click()
    wait_for(driver, lambda d: d.current_url.startswith(callback + "?"), "the redirect to the app")
    # The app redeems the code: now it holds a grant, listed on the account page.
    r = gh.token(client, grant_type="authorization_code", code=query(driver.current_url)["code"],
                 redirect_uri=callback, code_verifier=verifier)
    assert r.status_code == 200, r.text
    refresh_token = r.json()["refresh_token"]

    driver.get(gh.issuer + "/account")
    wait_for(driver, lambda d: css(d, "span#username"), "the account page")
    assert css(driver, "span#username")[0].text.strip() == user["username"]
    revoke = css(driver, "form.revoke")
    assert len(revoke) == 1, len(revoke)
    assert revoke[0].get_attribute("action").endswith("/account/revoke")
    assert "Notes" in driver.page_source
    assert css(driver, "form#logout-form")
    screenshot(driver, "account")

    # Revoking the app's grants removes it from the page.
    css(driver, "form.revoke button, form.revoke input[type=submit]")[0].click()
    wait_for(driver, lambda d: css(d, "span#username") and not css(d, "form.revoke"), "the app to disappear")
    r = gh.token(client, grant_type="refresh_token", refresh_token=refresh_token)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text

    # Signing out ends the session: /account then asks for a login.
    css(driver, "#logout-form button, #logout-form input[type=submit]")[0].click()
    wait_for(driver, lambda d: not css(d, "#logout-form"), "the sign-out")
    driver.get(gh.issuer + "/account")
    wait_for(driver, lambda d: css(d, "form#login-form"), "the login page after signing out")
    assert not css(driver, "span#username")
