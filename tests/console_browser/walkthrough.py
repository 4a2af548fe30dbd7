"""Walks the operator console in headless Chromium (Debian's chromium + chromium-driver,
driven with selenium) as an operator who has never seen the code would, and prints what it
saw as one JSON object; `tests/api/console_browser.rs` sets the stage and asserts.

Environment: BASE_URL, BOOTSTRAP_PASSWORD, NEW_PASSWORD, SCREENSHOTS (a directory for one
PNG per page). The operator finds the user to ban on the moderation page.
"""
import json
import os
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as visible
from selenium.webdriver.support.ui import WebDriverWait

base = os.environ["BASE_URL"]
shots = os.environ["SCREENSHOTS"]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
wait = WebDriverWait(driver, 15)
seen = {}


def element(id_):
    return wait.until(visible.visibility_of_element_located((By.ID, id_)))


def text_becomes(id_, predicate):
    wait.until(lambda d: predicate(d.find_element(By.ID, id_).text))
    return driver.find_element(By.ID, id_).text


def message():
    return driver.find_element(By.ID, "message").text


def shot(name):
    driver.save_screenshot(os.path.join(shots, name + ".png"))


def type_into(id_, text):
    field = element(id_)
    field.clear()
    field.send_keys(text)


def tab(name):
    driver.find_element(By.CSS_SELECTOR, f'nav button[data-tab="{name}"]').click()


try:
    driver.get(base + "/console")
    type_into("signin-name", "admin")
    type_into("signin-password", os.environ["BOOTSTRAP_PASSWORD"])
    shot("01-sign-in")
    element("signin-submit").click()
    element("password-form")
    seen["asked_to_change_password"] = message()
    type_into("password-current", os.environ["BOOTSTRAP_PASSWORD"])
    type_into("password-new", os.environ["NEW_PASSWORD"])
    shot("02-change-password")
    element("password-submit").click()
    seen["today_replies"] = text_becomes("today-replies", lambda t: t not in ("", "-"))
    seen["today_cost"] = driver.find_element(By.ID, "today-cost").text
    seen["yesterday_cost"] = driver.find_element(By.ID, "yesterday-cost").text
    seen["chart_bars"] = len(driver.find_elements(By.CSS_SELECTOR, "#chart-cost rect"))
    seen["session_cookie_visible_to_script"] = "companion_console" in driver.execute_script("return document.cookie")
    shot("03-overview")

    tab("personas")
    element("persona-list")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.persona-item[data-id="xiaoxi"] button'))
    driver.find_element(By.CSS_SELECTOR, '.persona-item[data-id="xiaoxi"] button').click()
    prompt = element("persona-system-prompt")
    prompt.clear()
    prompt.send_keys("你是小溪，说话温柔，喜欢用小动物打比方。")
    shot("04-persona-edit")
    element("persona-save").click()
    seen["persona_saved"] = text_becomes("message", lambda t: "已保存" in t or "有误" in t)

    tab("moderation")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".flagged-row .flagged-user"))
    seen["flagged"] = driver.find_element(By.CSS_SELECTOR, ".flagged-row").text
    shot("05-moderation")
    driver.find_element(By.CSS_SELECTOR, ".flagged-row .flagged-user").click()
    seen["found_user"] = text_becomes("user-id", lambda t: t != "")
    seen["user_status_before"] = text_becomes("user-status", lambda t: t != "")
    type_into("ban-reason", "多次发送骚扰信息")
    shot("06-user")
    element("ban-submit").click()
    seen["user_status_after"] = text_becomes("user-status", lambda t: t.startswith("已封禁"))
    shot("07-user-banned")

    tab("keys")
    type_into("key-name", "数据分析")
    type_into("key-per-minute", "30")
    element("key-create").click()
    seen["key"] = text_becomes("key-secret", lambda t: t.startswith("sk-companion-"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".key-row .key-revoke"))
    shot("08-keys")
    driver.find_element(By.CSS_SELECTOR, ".key-row .key-revoke").click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".key-row .key-revoke"))
    seen["key_status"] = driver.find_element(By.CSS_SELECTOR, ".key-row").text

    tab("audit")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#audit-list tbody tr")) >= 5)
    seen["audit"] = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#audit-list tbody tr")]
    shot("09-audit")

    element("signout").click()
    element("signin-form")
    seen["signed_out"] = message()
    driver.refresh()
    element("signin-form")
    seen["after_refresh_asks_to_sign_in"] = True
finally:
    # Script errors only: an expected 401 (the page asking whether it is signed in) is a
    # network entry.
    seen["console_errors"] = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE" and entry.get("source") != "network"
    ]
    driver.quit()

print(json.dumps(seen, ensure_ascii=False))
