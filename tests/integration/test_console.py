"""The operator's console in a real browser (Debian's chromium, headless, driven by Selenium through
chromium-driver) against a real ``pcaq up`` with credentials: sign in, list, search, revoke, see the
CRL and OCSP say so, watch the chart move during a burst, and be refused across accounts and without
the CSRF token.

One stack and one browser serve the whole module (the tests run in file order and share the world
the fixtures make). With ``PCAQ_CONSOLE_SCREENSHOTS`` set to a folder, each page is saved there as
a PNG (docs/console/ holds those of a run).
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.acmpca import fetch, issue, make_csr, pca_client
from tests.support import running_stack, wait_until

pytestmark = pytest.mark.integration

KEY_A, SECRET_A, ACCOUNT_A = "AKIDEXAMPLE", "secret", "111122223333"
KEY_B, SECRET_B, ACCOUNT_B = "AKIDOTHER", "other-secret", "444455556666"
LONG_NAME = ("Payments platform issuing root CA, Europe West, 2026 edition ok")[:64]
TARGET_CN = "console-target.payments.example.com"
SANS = [TARGET_CN] + [f"node-{i:03d}.payments.example.com" for i in range(199)]
BURST = 120
REVOCATION = {
    "CrlConfiguration": {"Enabled": True, "ExpirationInDays": 2},
    "OcspConfiguration": {"Enabled": True},
}


def _browser_paths() -> tuple[str | None, str | None]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return chromium, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module (skipped only when none is installed)."""
    chromium, driver_path = _browser_paths()
    if not chromium or not driver_path:
        pytest.skip("no chromium and chromium-driver on PATH (CI installs them: .ci/run)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_base_url):
    env = {"PCAQ_CREDENTIALS": f"{KEY_A}:{SECRET_A}:{ACCOUNT_A},{KEY_B}:{SECRET_B}:{ACCOUNT_B}"}
    with running_stack(
        tmp_path_factory.mktemp("console"), env, workers=1, redis_base_url=redis_base_url
    ) as s:
        yield s


def _activate_root(pca, common_name: str) -> tuple[str, str]:
    arn = pca.create_certificate_authority(
        CertificateAuthorityType="ROOT",
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": common_name, "Organization": "pcaq"},
        },
        RevocationConfiguration=REVOCATION,
    )["CertificateAuthorityArn"]
    pca.get_waiter("certificate_authority_csr_created").wait(
        CertificateAuthorityArn=arn, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"].encode()
    cert_arn = issue(pca, arn, csr, template="RootCACertificate", validity={"Value": 5, "Type": "YEARS"})
    _, pem, _ = fetch(pca, arn, cert_arn)
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem.encode())
    return arn, pem


@pytest.fixture(scope="module")
def world(stack):
    """Account A: a root with a 64-character name, a certificate with 200 SANs and a few others.
    Account B: a CA of its own."""
    pca = pca_client(stack.endpoint_url)
    arn, pem = _activate_root(pca, LONG_NAME)
    target, _, _ = fetch(pca, arn, issue(pca, arn, make_csr(cn=TARGET_CN, sans=SANS)))
    others = [issue(pca, arn, make_csr(cn=f"other-{i}.example.com", sans=())) for i in range(3)]
    for other in others:
        fetch(pca, arn, other)
    pca_b = pca_client(stack.endpoint_url, secret=SECRET_B, access_key=KEY_B)
    arn_b, _ = _activate_root(pca_b, "Account B root")
    return {
        "pca": pca,
        "arn": arn,
        "id": arn.rsplit("/", 1)[1],
        "pem": pem,
        "target": target,
        "serial": format(target.serial_number, "x"),
        "others": others,
        "arn_b": arn_b,
    }


def shot(driver, name: str) -> None:
    """Save the page as ``<PCAQ_CONSOLE_SCREENSHOTS>/<name>.png`` when that folder is given."""
    folder = os.environ.get("PCAQ_CONSOLE_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height, 600), 2400))
    driver.save_screenshot(str(Path(folder) / f"{name}.png"))
    driver.set_window_size(width, 1000)


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def sign_in(driver, base: str, key: str, secret: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/console/")
    WebDriverWait(driver, 10).until(lambda d: "/console/sign-in" in d.current_url)
    driver.find_element(By.ID, "access_key").send_keys(key)
    driver.find_element(By.ID, "secret").send_keys(secret + Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "who"))


def no_horizontal_overflow(driver) -> bool:
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_sign_in_refuses_a_wrong_secret_and_lists_only_the_accounts_cas(browser, stack, world):
    base = stack.endpoint_url
    browser.delete_all_cookies()
    browser.get(f"{base}/console/")
    WebDriverWait(browser, 10).until(lambda d: "/console/sign-in" in d.current_url)
    shot(browser, "sign-in")
    browser.find_element(By.ID, "access_key").send_keys(KEY_A)
    browser.find_element(By.ID, "secret").send_keys("not-the-secret" + Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "error"))
    assert "do not match" in text_of(browser, "error")

    sign_in(browser, base, KEY_A, SECRET_A)
    cookie = browser.get_cookie("pcaq_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie.get("expiry")
    table = text_of(browser, "cas")
    assert LONG_NAME in table and "Account B root" not in table
    assert "EC_prime256v1" in table and "ACTIVE" in table
    shot(browser, "cas")
    browser.set_window_size(390, 900)  # a phone: a 64-character name must not push the page sideways
    try:
        assert no_horizontal_overflow(browser)
        shot(browser, "cas-phone")
    finally:
        browser.set_window_size(1280, 1000)


def test_find_a_certificate_by_cn_revoke_it_and_see_it_in_the_crl_and_ocsp(browser, stack, world):
    base, ca_id = stack.endpoint_url, world["id"]
    sign_in(browser, base, KEY_A, SECRET_A)
    browser.get(f"{base}/console/cas/{ca_id}")
    assert LONG_NAME in browser.find_element(By.TAG_NAME, "h1").text
    shot(browser, "ca")
    browser.find_element(By.ID, "certificates-link").click()
    search = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "q"))
    search.send_keys("CONSOLE-TARGET" + Keys.ENTER)  # keyboard only; the search is case-insensitive
    # The list before the search has a table of that id too: wait for the search's own page.
    WebDriverWait(browser, 10).until(
        lambda d: "q=" in d.current_url and d.find_elements(By.ID, "certificates")
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#certificates tbody tr")
    assert len(rows) == 1 and TARGET_CN in rows[0].text and world["serial"] in rows[0].text
    shot(browser, "certificates")
    rows[0].find_element(By.LINK_TEXT, world["serial"]).click()

    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "sans"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sans li")) == 200
    assert "ISSUED" in text_of(browser, "status")
    browser.set_window_size(390, 900)  # 200 SANs on a phone
    try:
        assert no_horizontal_overflow(browser)
    finally:
        browser.set_window_size(1280, 1000)
    shot(browser, "certificate")

    browser.find_element(By.ID, "revoke").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "confirm-revoke"))
    confirm = text_of(browser, "confirm-text")
    assert TARGET_CN in confirm and x509_colon(world["serial"]) in confirm
    Select(browser.find_element(By.ID, "reason")).select_by_value("KEY_COMPROMISE")
    shot(browser, "revoke")
    browser.find_element(By.ID, "confirm-revoke").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "notice"))
    assert "REVOKED" in text_of(browser, "status")

    def crl_lists_it() -> bool:
        with urllib.request.urlopen(f"{base}/crl/{ca_id}.crl", timeout=10) as resp:
            crl = x509.load_der_x509_crl(resp.read())
        return crl.get_revoked_certificate_by_serial_number(world["target"].serial_number) is not None

    wait_until(crl_lists_it, 30, interval=0.2, what="the CRL to list the revoked certificate")
    assert ocsp_status(base, world["target"], world["pem"]) is ocsp.OCSPCertStatus.REVOKED

    browser.get(f"{base}/console/cas/{ca_id}")  # the audit trail: the API call it stands for, by this key
    audit = text_of(browser, "audit")
    assert any("RevokeCertificate" in line and KEY_A in line for line in audit.splitlines())
    browser.get(f"{base}/console/cas/{ca_id}/certificates?status=revoked")
    assert world["serial"] in text_of(browser, "certificates")


def test_the_issuance_chart_moves_while_a_burst_is_issued(browser, stack, world):
    base = stack.endpoint_url
    sign_in(browser, base, KEY_A, SECRET_A)
    browser.get(f"{base}/console/issuance")
    before = int(browser.find_element(By.ID, "chart-issued").get_attribute("data-total"))
    pca, arn = world["pca"], world["arn"]
    csrs = [make_csr(cn=f"burst-{i}.example.com", sans=()) for i in range(BURST)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda csr: issue(pca, arn, csr), csrs))

    def moved(driver) -> bool:
        driver.refresh()
        return int(driver.find_element(By.ID, "chart-issued").get_attribute("data-total")) >= before + BURST

    WebDriverWait(browser, 60, poll_frequency=0.5).until(moved)
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-issued polyline")
    assert int(text_of(browser, "workers-alive")) >= 1
    shot(browser, "issuance")


def test_a_form_without_the_csrf_token_is_refused(browser, stack, world):
    base, ca_id = stack.endpoint_url, world["id"]
    pca, arn = world["pca"], world["arn"]
    other, _, _ = fetch(pca, arn, world["others"][0])
    serial = format(other.serial_number, "x")
    sign_in(browser, base, KEY_A, SECRET_A)
    browser.get(f"{base}/console/cas/{ca_id}/certificates/{serial}/revoke")
    csrf = browser.find_element(By.CSS_SELECTOR, "#revoke-form input[name=csrf]")
    browser.execute_script("arguments[0].value = 'forged'", csrf)  # as a page on another site would send it
    browser.find_element(By.ID, "confirm-revoke").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "error"))
    assert "did not come from this console" in text_of(browser, "error")
    browser.get(f"{base}/console/cas/{ca_id}/certificates/{serial}")
    assert text_of(browser, "status") == "ISSUED"


def test_another_accounts_key_is_refused_its_cas_and_certificates(browser, stack, world):
    base, ca_id = stack.endpoint_url, world["id"]
    sign_in(browser, base, KEY_B, SECRET_B)
    table = text_of(browser, "cas")
    assert "Account B root" in table and LONG_NAME not in table
    for path in (f"cas/{ca_id}", f"cas/{ca_id}/certificates", f"cas/{ca_id}/certificates/{world['serial']}"):
        browser.get(f"{base}/console/{path}")
        assert "no certificate authority" in text_of(browser, "error"), path
    with pytest.raises(NoSuchElementException):
        browser.find_element(By.ID, "certificates")


def test_bad_input_gets_a_message_on_the_page(browser, stack, world):
    base, ca_id = stack.endpoint_url, world["id"]
    sign_in(browser, base, KEY_A, SECRET_A)
    cases = {
        f"cas/{ca_id}/certificates?status=bogus": "Status must be one of",
        f"cas/{ca_id}/certificates?status=expiring&days=0": "Days must be a whole number",
        f"cas/{ca_id}/certificates?after=nonsense": "page link is not valid",
        f"cas/{ca_id}/certificates/zz-not-hex": "not a hexadecimal serial",
        "cas/..%2f..%2fetc": "There is no",
    }
    for path, message in cases.items():
        browser.get(f"{base}/console/{path}")
        assert message in text_of(browser, "error"), path
        assert "Traceback" not in browser.page_source


def test_sign_out_ends_the_session(browser, stack, world):
    base = stack.endpoint_url
    sign_in(browser, base, KEY_A, SECRET_A)
    cookie = browser.get_cookie("pcaq_console")
    browser.find_element(By.ID, "sign-out").click()
    WebDriverWait(browser, 10).until(lambda d: "/console/sign-in" in d.current_url)
    browser.add_cookie({"name": "pcaq_console", "value": cookie["value"], "path": "/console/"})
    browser.get(f"{base}/console/")  # the old cookie no longer opens anything
    assert "/console/sign-in" in browser.current_url


def x509_colon(serial_hex: str) -> str:
    padded = serial_hex if len(serial_hex) % 2 == 0 else "0" + serial_hex
    return ":".join(padded[i : i + 2] for i in range(0, len(padded), 2))


def ocsp_status(base: str, cert: x509.Certificate, issuer_pem: str) -> ocsp.OCSPCertStatus:
    issuer = x509.load_pem_x509_certificate(issuer_pem.encode())
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    body = der.public_bytes(serialization.Encoding.DER)
    request = urllib.request.Request(f"{base}/ocsp", body, {"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return ocsp.load_der_ocsp_response(resp.read()).certificate_status
