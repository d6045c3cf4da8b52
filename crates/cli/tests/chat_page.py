"""Drives the chat page of `torchless serve` in headless Chromium (Selenium + chromedriver):
sends a message, waits for the streamed answer, checks the page shows the model's name and a
tokens/s figure, and saves a screenshot. argv: BASE_URL SCREENSHOT.png MODEL_NAME"""
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, shot, model = sys.argv[1], sys.argv[2], sys.argv[3]
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1000,800", "--user-data-dir=" + tempfile.mkdtemp()]:
    opts.add_argument(flag)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    d.get(base + "/")
    assert d.find_element(By.ID, "model").text == model, d.find_element(By.ID, "model").text
    box = d.find_element(By.ID, "q")
    box.send_keys("Why is the sky blue? Answer in one sentence.")
    d.find_element(By.ID, "send").click()
    deadline = time.time() + 120
    answer = ""
    while time.time() < deadline:
        answers = d.find_elements(By.CSS_SELECTOR, ".assistant .answer")
        answer = answers[-1].text if answers else ""
        done = d.find_element(By.ID, "send").is_enabled() and not d.find_element(By.ID, "stop").is_enabled()
        if answer and done:
            break
        time.sleep(0.2)
    assert answer, "no answer appeared"
    assert "Error" not in answer, answer
    users = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".user")]
    assert users == ["Why is the sky blue? Answer in one sentence."], users
    stats = d.find_element(By.ID, "stats").text
    assert "tokens/s" in stats, stats
    d.save_screenshot(shot)
    print("answer:", answer)
    print("stats:", stats)
finally:
    d.quit()
