#!/usr/bin/env python3
"""Explorer smoke test in real headless Firefox, over WebDriver BiDi.

    python3 firefox_test.py <rpc-url> [--firefox PATH] [--timeout SECS]

The Chromium test (explorer_test.py) is the thorough one; this one proves
the page also runs in Firefox: it loads with no console errors, shows the
current height, and shows a block mined after the page loaded without a
reload. Every wait has a deadline. The last line is `PASS ...` or
`FAIL ...`; the exit code is non-zero on failure.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from explorer_test import Node, TestFailure, WebSocket  # noqa: E402


class Firefox:
    """Headless Firefox with its WebDriver BiDi endpoint on a local port."""

    def __init__(self, binary, timeout):
        self.profile = tempfile.mkdtemp(prefix='explorer-firefox-')
        self.process = subprocess.Popen(
            [binary, '--headless', '--no-remote', '--profile', self.profile,
             '--remote-debugging-port=0', 'about:blank'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = self._endpoint(timeout)
        self.ws = WebSocket(url + '/session', timeout)
        self.next_id = 0
        self.errors = []
        self.call('session.new', {'capabilities': {}})
        self.call('session.subscribe', {'events': ['log.entryAdded']})
        tree = self.call('browsingContext.getTree', {})
        self.context = tree['contexts'][0]['context']

    def _endpoint(self, timeout):
        # Firefox says where BiDi listens on stderr; read until it does.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise TestFailure('Firefox exited before its BiDi endpoint was up')
            match = re.search(r'WebDriver BiDi listening on (ws://\S+)', line)
            if match:
                return match.group(1)
        raise TestFailure('Firefox did not open its BiDi endpoint in time')

    def call(self, method, params, timeout=20):
        self.next_id += 1
        request_id = self.next_id
        self.ws.send(json.dumps({'id': request_id, 'method': method, 'params': params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.ws.recv(deadline - time.monotonic())
            if text is None:
                break
            message = json.loads(text)
            if message.get('type') == 'event':
                self._event(message)
            elif message.get('id') == request_id:
                if message.get('type') == 'error':
                    raise TestFailure(f'{method}: {message.get("error")}: {message.get("message")}')
                return message.get('result', {})
        raise TestFailure(f'{method}: no answer within {timeout}s')

    def _event(self, message):
        params = message.get('params', {})
        if message.get('method') == 'log.entryAdded' and params.get('level') == 'error':
            self.errors.append(params.get('text', ''))

    def text_of(self, element_id):
        result = self.call('script.evaluate', {
            'expression': f'(document.getElementById({json.dumps(element_id)}) || {{}}).textContent || ""',
            'target': {'context': self.context}, 'awaitPromise': False})
        return result.get('result', {}).get('value', '')

    def wait_for(self, what, condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)  # polling interval of a condition with a deadline
        raise TestFailure(f'timed out waiting for {what}')

    def close(self):
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def run(args):
    node = Node(args.rpc_url, os.environ.get('LEDGER_RPC_ADMIN_TOKEN'))
    firefox = Firefox(args.firefox, args.timeout)
    try:
        firefox.call('browsingContext.navigate', {
            'context': firefox.context, 'url': args.rpc_url.rstrip('/') + '/', 'wait': 'complete'})
        height = node.get('/v1/status')['height']
        firefox.wait_for(f'height {height} shown', lambda: firefox.text_of('height').strip() == str(height),
                         args.timeout)
        firefox.call('script.evaluate', {'expression': 'window.__notReloaded = true',
                                         'target': {'context': firefox.context}, 'awaitPromise': False})
        status, answer = node.request('POST', '/v1/dev/mine', {'blocks': 1})
        if status != 200:
            raise TestFailure(f'POST /v1/dev/mine answered {status}: {answer}')
        mined = answer['hashes'][0]
        firefox.wait_for('the mined block shown', lambda: mined[:8] in firefox.text_of('blocks'), args.timeout)
        still = firefox.call('script.evaluate', {'expression': 'window.__notReloaded === true',
                                                 'target': {'context': firefox.context}, 'awaitPromise': False})
        if still.get('result', {}).get('value') is not True:
            raise TestFailure('the page reloaded to show the new block')
        errors = [error for error in firefox.errors if '/v1/network' not in error]
        if errors:
            raise TestFailure(f'console errors: {errors[:3]}')
        return f'height {height} shown, block {mined[:8]} shown live, no console errors'
    finally:
        firefox.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('rpc_url')
    parser.add_argument('--firefox', default=shutil.which('firefox-esr') or shutil.which('firefox'))
    parser.add_argument('--timeout', type=float, default=30)
    args = parser.parse_args()
    if not args.firefox:
        print('FAIL explorer Firefox test: no Firefox found (apt-get install -y firefox-esr)')
        return 1
    try:
        summary = run(args)
    except (TestFailure, OSError, urllib.error.URLError) as error:
        print(f'FAIL explorer Firefox test: {error}')
        return 1
    print(f'PASS explorer Firefox test: {summary} against {args.rpc_url}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
