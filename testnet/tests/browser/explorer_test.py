#!/usr/bin/env python3
"""Browser test of the node's explorer page, in real headless Chromium.

Usage: explorer_test.py <rpc-url> [--screenshots DIR] [--txid TXID]
                        [--chromium PATH] [--wallet-cli PATH] [--timeout SECS]

It starts its own headless Chromium, drives it over the Chrome DevTools
Protocol (a websocket, spoken here with the standard library only, so the
test needs nothing from PyPI), and checks against a running node that:

  1. the page loads and shows the node's current height;
  2. it holds an open /v1/events stream (the badge reads "live");
  3. a tx this test sent (if it had to send one) shows in the mempool list;
  4. after POST /v1/dev/mine the new block appears in the latest-blocks
     list without a reload (a marker set on `window` must survive);
  5. clicking that block opens the block view;
  6. typing a txid into the search box and pressing Enter opens that tx;
  7. at phone width (390x844) the page never scrolls sideways;
  8. nothing was logged to the console as an error (the expected 404 of
     the optional /v1/network route excepted).

With --screenshots DIR it also saves explorer-1280x800.png and
explorer-390x844.png of the overview there.

A transaction to search for is, in order: --txid; one already in the mempool
or in recent blocks; or a new one sent with wallet-cli (--wallet-cli,
$WALLET_CLI, or `wallet-cli` on PATH) from dev account 0.

Every wait is bounded by a deadline. The last line printed is a one-line
summary starting with PASS or FAIL; the exit status is 0 only on PASS.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

VIEWPORTS = {'laptop': (1280, 800, False), 'phone': (390, 844, True)}
# Console errors that are part of the design, not bugs: the network graph
# probes /v1/network, which a node may not serve (the page then degrades).
ALLOWED_NETWORK_ERRORS = ('/v1/network',)


class TestFailure(Exception):
    """A check failed; the message is the summary line's reason."""


def log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------- node API

class Node:
    def __init__(self, rpc_url, admin_token):
        self.base = rpc_url.rstrip('/')
        self.admin_token = admin_token

    def request(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header('accept', 'application/json')
        if data is not None:
            req.add_header('content-type', 'application/json')
        if self.admin_token:
            req.add_header('authorization', f'Bearer {self.admin_token}')
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b'null')
        except urllib.error.HTTPError as err:
            try:
                payload = json.loads(err.read() or b'null')
            except ValueError:
                payload = None
            return err.code, payload

    def get(self, path):
        status, payload = self.request('GET', path)
        if status != 200:
            raise TestFailure(f'GET {path} answered {status}: {payload}')
        return payload


# ------------------------------------------------ websocket (RFC 6455), client

class WebSocket:
    """Just enough of a websocket client for the DevTools protocol: one
    connection to a local browser, text frames, no extensions."""

    def __init__(self, url, timeout):
        parsed = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f'GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n'
                   f'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n'
                   'Sec-WebSocket-Version: 13\r\n\r\n')
        self.sock.sendall(request.encode())
        self.buffer = b''
        while b'\r\n\r\n' not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise TestFailure('DevTools websocket handshake: connection closed')
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b'\r\n\r\n', 1)
        if b' 101 ' not in head.split(b'\r\n', 1)[0]:
            raise TestFailure(f'DevTools websocket handshake refused: {head[:200]!r}')
        self.fragments = b''

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack('!BB', 0x81, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack('!BBH', 0x81, 0x80 | 126, length)
        else:
            header = struct.pack('!BBQ', 0x81, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _frame(self):
        """One complete frame from the buffer, or None if more bytes are needed."""
        if len(self.buffer) < 2:
            return None
        first, second = self.buffer[0], self.buffer[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            length, offset = struct.unpack('!H', self.buffer[2:4])[0], 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            length, offset = struct.unpack('!Q', self.buffer[2:10])[0], 10
        if second & 0x80:  # servers never mask, but skip a mask if present
            offset += 4
        if len(self.buffer) < offset + length:
            return None
        payload = self.buffer[offset:offset + length]
        self.buffer = self.buffer[offset + length:]
        return first & 0x80, first & 0x0F, payload

    def recv(self, timeout):
        """The next text message, or None when `timeout` passes first. The
        buffer survives a timeout, so a half-received frame is never lost."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                fin, opcode, payload = frame
                if opcode == 0x8:
                    raise TestFailure('the browser closed the DevTools connection')
                if opcode == 0x9:  # ping -> pong
                    self.sock.sendall(struct.pack('!BB', 0x8A, 0x80 | len(payload)) + b'\0\0\0\0' + payload)
                    continue
                if opcode in (0x1, 0x0):
                    self.fragments += payload
                    if fin:
                        message, self.fragments = self.fragments, b''
                        return message.decode()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                return None
            if not chunk:
                raise TestFailure('the browser closed the DevTools connection')
            self.buffer += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------- DevTools

class Browser:
    """Headless Chromium with one page, attached in flat-session mode."""

    def __init__(self, chromium, deadline_secs):
        self.profile = tempfile.mkdtemp(prefix='explorer-test-chromium-')
        args = [chromium, '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--no-first-run', '--no-default-browser-check', '--disable-extensions',
                '--disable-background-networking', '--disable-component-update', '--hide-scrollbars',
                '--remote-debugging-port=0', f'--user-data-dir={self.profile}', 'about:blank']
        # Chromium's own log goes to a file, not a pipe nobody drains (a full
        # pipe would block the browser); it is read back only if it dies. It
        # gets its own process group, so cleanup can end the browser and its
        # helper processes by this one id.
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                        start_new_session=True)
        self.ws = None
        self.next_id = 0
        self.session = None
        self.console_errors = []
        try:
            self._attach(deadline_secs)
        except BaseException:
            self.close()
            raise

    def _attach(self, deadline_secs):
        port_file = os.path.join(self.profile, 'DevToolsActivePort')
        deadline = time.monotonic() + deadline_secs
        while True:
            # Chromium writes its chosen port here once DevTools listens.
            if os.path.exists(port_file):
                lines = open(port_file).read().split('\n')
                if len(lines) >= 2 and lines[1]:
                    break
            if self.process.poll() is not None:
                self.stderr.seek(0)
                err = self.stderr.read().decode(errors='replace').strip().splitlines()
                raise TestFailure(f'chromium exited at start: {err[-1] if err else "no output"}')
            if time.monotonic() > deadline:
                raise TestFailure('chromium did not open its DevTools port in time')
            time.sleep(0.05)  # polling a file Chromium writes; bounded by the deadline
        self.ws = WebSocket(f'ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}', timeout=deadline_secs)
        target = self.call('Target.createTarget', {'url': 'about:blank'}, session=False)['targetId']
        self.session = self.call('Target.attachToTarget', {'targetId': target, 'flatten': True}, session=False)['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            self.call(f'{domain}.enable')

    def _handle_event(self, message):
        method, params = message.get('method'), message.get('params', {})
        if method == 'Runtime.consoleAPICalled' and params.get('type') in ('error', 'assert'):
            text = ' '.join(str(arg.get('value', arg.get('description', ''))) for arg in params.get('args', []))
            self.console_errors.append(f'console.{params["type"]}: {text}')
        elif method == 'Runtime.exceptionThrown':
            details = params.get('exceptionDetails', {})
            exception = details.get('exception', {}).get('description') or details.get('text')
            self.console_errors.append(f'uncaught: {str(exception).splitlines()[0] if exception else "?"}')
        elif method == 'Log.entryAdded':
            entry = params.get('entry', {})
            if entry.get('level') == 'error':
                url = entry.get('url', '')
                if entry.get('source') == 'network' and any(path in url for path in ALLOWED_NETWORK_ERRORS):
                    return
                self.console_errors.append(f'{entry.get("source")}: {entry.get("text")} {url}'.strip())

    def pump(self, timeout):
        """Handles events until `timeout` passes or a message arrives."""
        raw = self.ws.recv(timeout)
        if raw is not None:
            message = json.loads(raw)
            if 'method' in message:
                self._handle_event(message)
            return message
        return None

    def call(self, method, params=None, session=True, timeout=15):
        self.next_id += 1
        request = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session:
            request['sessionId'] = self.session
        self.ws.send(json.dumps(request))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pump(deadline - time.monotonic())
            if message and message.get('id') == self.next_id:
                if 'error' in message:
                    raise TestFailure(f'{method}: {message["error"].get("message")}')
                return message.get('result', {})
        raise TestFailure(f'{method}: no answer from the browser within {timeout}s')

    def js(self, expression, await_promise=False):
        result = self.call('Runtime.evaluate', {'expression': expression, 'returnByValue': True,
                                                'awaitPromise': await_promise})
        if 'exceptionDetails' in result:
            raise TestFailure(f'page script failed: {result["exceptionDetails"].get("text")}: {expression[:80]}')
        return result.get('result', {}).get('value')

    def wait_until(self, condition, what, timeout):
        """Calls `condition()` until it returns something truthy; fails after
        `timeout`. Between tries it handles browser events for up to 100 ms,
        so the wait is never idle sleeping and console errors are collected."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TestFailure(f'timed out after {timeout:g}s waiting for {what}')
            self.pump(min(0.1, max(0.0, deadline - time.monotonic())))

    def wait_for(self, expression, what, timeout):
        """Waits until the page expression `expression` is truthy."""
        return self.wait_until(lambda: self.js(expression), what, timeout)

    def viewport(self, name):
        width, height, mobile = VIEWPORTS[name]
        self.call('Emulation.setDeviceMetricsOverride',
                  {'width': width, 'height': height, 'deviceScaleFactor': 1, 'mobile': mobile})
        # (about:blank has no viewport meta tag, so a phone lays it out wider.)
        self.wait_for(f"location.href === 'about:blank' || document.documentElement.clientWidth === {width}",
                      f'the {name} viewport', 10)
        # Two animation frames: the resize handlers have run and the page
        # has been laid out and painted at the new size.
        self.js('new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))', await_promise=True)

    def screenshot(self, path):
        data = self.call('Page.captureScreenshot', {'format': 'png'})['data']
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'wb') as out:
            out.write(base64.b64decode(data))

    def close(self):
        if self.ws:
            self.ws.close()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# ------------------------------------------------------------------ test

def find_chromium(explicit):
    for candidate in (explicit, os.environ.get('CHROMIUM'), 'chromium', 'chromium-browser',
                      'google-chrome', 'google-chrome-stable'):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise TestFailure('no Chromium found: install the `chromium` package or pass --chromium PATH')


def find_txid(node, args, height):
    """A txid the search box can open, and whether this test sent it."""
    if args.txid:
        return args.txid, False
    mempool = node.get('/v1/mempool')
    if mempool.get('txids'):
        return mempool['txids'][0], False
    start = max(0, height - 99)
    for block in reversed(node.get(f'/v1/blocks?from={start}&limit=100')):
        txs = block.get('txs')
        if txs is None and block.get('tx_count'):  # a list without bodies
            txs = node.get(f'/v1/blocks/{block["hash"]}').get('txs')
        if txs:
            return txs[0]['txid'], False
    wallet = args.wallet_cli or os.environ.get('WALLET_CLI') or shutil.which('wallet-cli')
    if not wallet:
        raise TestFailure('no transaction on the chain to search for: pass --txid, or --wallet-cli PATH to send one')
    with tempfile.TemporaryDirectory(prefix='explorer-test-keystore-') as keystore:
        command = [wallet, '--rpc-url', node.base, '--keystore', keystore, '--json',
                   'send', '--from', 'dev:0', '--to', 'dev:1', '--amount', '0.001', '--memo', 'explorer test']
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise TestFailure('wallet-cli send did not finish within 30s')
    if result.returncode != 0:
        raise TestFailure(f'wallet-cli send failed ({result.returncode}): {result.stderr.strip()[-200:]}')
    try:
        return json.loads(result.stdout)['txid'], True
    except (ValueError, KeyError, TypeError):
        raise TestFailure(f'wallet-cli send printed no txid: {result.stdout.strip()[:200]!r}')


def run(args, checks):
    node = Node(args.rpc_url, args.admin_token)
    timeout = args.timeout

    # The node must answer before a browser is worth starting.
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = node.get('/v1/status')
            break
        except (OSError, TestFailure) as err:
            if time.monotonic() > deadline:
                raise TestFailure(f'node at {node.base} not answering /v1/status: {err}')
            time.sleep(0.2)  # retrying a refused connection; bounded by the deadline
    height = int(status['height'])

    browser = Browser(find_chromium(args.chromium), timeout)
    try:
        browser.viewport('laptop')
        browser.call('Page.navigate', {'url': node.base + '/'})
        browser.wait_for("document.readyState === 'complete'", 'the page to load', timeout)
        # The shown height as a string (0 would read as false), once it has
        # reached the node's height; a miner may have moved it on since.
        shown = browser.wait_for(f"(h => /^\\d+$/.test(h) && Number(h) >= {height} && h)"
                                 f"((document.getElementById('height') || {{}}).textContent.replace(/,/g, ''))",
                                 f'#height to show {height}', timeout)
        checks.append(f'height {shown} shown')
        # `live` means the page holds an open /v1/events stream.
        browser.wait_for("document.getElementById('conn').dataset.state === 'live'", 'the event stream to connect', timeout)
        checks.append('events connected')
        browser.wait_for("document.querySelectorAll('#blocks [data-hash]').length > 0", 'the latest-blocks list', timeout)

        txid, sent_by_us = find_txid(node, args, height)
        if sent_by_us:
            # The tx event should put it in the mempool list at once. A miner
            # on the node may confirm it first, which is fine too.
            in_list = f"document.querySelector('#mempool-list [data-txid=\"{txid}\"]') !== null"
            browser.wait_until(lambda: browser.js(in_list) or (node.request('GET', f'/v1/txs/{txid}')[1] or {}).get('status') == 'confirmed',
                               'the sent tx in the mempool list', timeout)
            checks.append('sent tx shown in mempool')

        # A marker on window dies with a reload; it must survive the update.
        browser.js("window.__explorerTestMarker = 'no-reload'")
        mined_at = time.monotonic()
        code, mined = node.request('POST', '/v1/dev/mine', {'blocks': 1}, timeout=timeout)
        if code != 200 or not mined or not mined.get('hashes'):
            raise TestFailure(f'POST /v1/dev/mine answered {code}: {mined} (admin routes need loopback or --admin-token)')
        block_hash = mined['hashes'][-1]
        row = f"document.querySelector('#blocks [data-hash=\"{block_hash}\"]')"
        browser.wait_for(f'{row} !== null', f'mined block {block_hash[:12]} in #blocks', timeout)
        if browser.js('window.__explorerTestMarker') != 'no-reload':
            raise TestFailure('the page reloaded to show the new block')
        checks.append(f'new block shown live in {time.monotonic() - mined_at:.2f}s')

        # Click that row, or the newest if a busy node has already pushed it
        # out of the list (or a reorg replaced it) since the check above.
        clicked = browser.js(f"(r => {{ r.click(); return r.dataset.hash; }})({row} || document.querySelector('#blocks [data-hash]'))")
        browser.wait_for(f"(d => !d.hidden && d.dataset.kind === 'block' && d.dataset.loaded === 'true' && "
                         f"d.textContent.includes('{clicked}'))(document.getElementById('detail'))",
                         'the block view', timeout)
        checks.append('block view opens')

        # Search like a user: focus, type, press Enter.
        browser.js("(s => { s.value = ''; s.focus(); })(document.getElementById('search'))")
        browser.call('Input.insertText', {'text': txid})
        for kind in ('rawKeyDown', 'char', 'keyUp'):
            key = {'type': kind, 'key': 'Enter', 'code': 'Enter', 'windowsVirtualKeyCode': 13, 'nativeVirtualKeyCode': 13}
            if kind == 'char':
                key['text'] = '\r'
            browser.call('Input.dispatchKeyEvent', key)
        browser.wait_for(f"location.hash === '#/tx/{txid}' && (d => !d.hidden && d.dataset.kind === 'tx' && "
                         f"d.dataset.loaded === 'true' && d.textContent.includes('{txid}'))(document.getElementById('detail'))",
                         'search to open the tx view', timeout)
        checks.append('search opens tx')

        no_sideways = 'document.documentElement.scrollWidth <= document.documentElement.clientWidth'
        browser.viewport('phone')
        if not browser.js(no_sideways):
            raise TestFailure('the tx view scrolls sideways at 390px: ' + str(browser.js('document.documentElement.scrollWidth')))
        browser.js("location.hash = '#/'")
        browser.wait_for("document.getElementById('detail').hidden", 'the overview', timeout)
        browser.viewport('phone')
        if not browser.js(no_sideways):
            raise TestFailure('the overview scrolls sideways at 390px: ' + str(browser.js('document.documentElement.scrollWidth')))
        checks.append('no sideways scroll at 390px')

        if args.screenshots:
            # The overview as a visitor first sees it: empty, unfocused search.
            browser.js("(s => { s.value = ''; s.blur(); })(document.getElementById('search'))")
            for name in ('laptop', 'phone'):
                width, height_px, _ = VIEWPORTS[name]
                browser.viewport(name)
                browser.js('window.scrollTo(0, 0)')
                path = os.path.join(args.screenshots, f'explorer-{width}x{height_px}.png')
                browser.screenshot(path)
                log(f'saved {path}')
            checks.append('screenshots saved')

        # Let any late events arrive before judging the console.
        browser.pump(0.2)
        if browser.console_errors:
            raise TestFailure(f'{len(browser.console_errors)} console error(s), first: {browser.console_errors[0]}')
        checks.append('no console errors')
    finally:
        browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('rpc_url', help='the node RPC URL, e.g. http://127.0.0.1:8080')
    parser.add_argument('--screenshots', metavar='DIR', help='save explorer-1280x800.png and explorer-390x844.png here')
    parser.add_argument('--txid', help='a txid to search for (default: find or send one)')
    parser.add_argument('--chromium', help='Chromium binary (default: $CHROMIUM or chromium on PATH)')
    parser.add_argument('--wallet-cli', help='wallet-cli binary used to send a tx when the chain has none')
    parser.add_argument('--admin-token', default=os.environ.get('LEDGER_RPC_ADMIN_TOKEN'),
                        help='bearer token for POST /v1/dev/mine (default: $LEDGER_RPC_ADMIN_TOKEN)')
    parser.add_argument('--timeout', type=float, default=20, help='seconds allowed for each wait (default 20)')
    args = parser.parse_args()

    checks = []
    started = time.monotonic()
    try:
        run(args, checks)
    except TestFailure as failure:
        reason = ' '.join(str(failure).split())  # one line, whatever the browser said
        print(f'FAIL explorer browser test: {reason} (passed before it: {", ".join(checks) or "none"})', flush=True)
        return 1
    except KeyboardInterrupt:
        print('FAIL explorer browser test: interrupted', flush=True)
        return 130
    except Exception as error:  # a bug here or a surprising answer: still one clear line
        print(f'FAIL explorer browser test: unexpected {type(error).__name__}: {error} '
              f'(passed before it: {", ".join(checks) or "none"})', flush=True)
        return 1
    print(f'PASS explorer browser test: {len(checks)} checks in {time.monotonic() - started:.1f}s '
          f'({", ".join(checks)}) against {args.rpc_url}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
