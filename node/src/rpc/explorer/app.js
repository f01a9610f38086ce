// gossip-ledger explorer: a single page served by every node at `/`.
//
// It reads only this node's public `/v1` API. Two sources keep it current:
// a poll every few seconds (the truth, and the fallback when events drop)
// and the server-sent events at `/v1/events` (so a new block shows at once).
// Data from the API is only ever put into the page with `textContent` or as
// attribute values, never parsed as HTML, so a hostile memo or peer address
// cannot inject markup.
'use strict';

(() => {
  const COIN = 100000000n;        // base units per coin
  const POLL_MS = 4000;           // how often the poll re-reads the API
  const CHART_BLOCKS = 30;        // blocks fetched per poll (chart + list)
  const LATEST_BLOCKS = 12;       // rows in the latest-blocks list
  const MEMPOOL_ROWS = 12;        // rows in the mempool list
  const TREE_KEEP = 500;          // blocks kept in memory for the fork tree
  const REORGS_KEEP = 8;          // reorg log entries shown
  const NETWORK_RETRY_MS = 60000; // re-probe /v1/network this often after a 404

  const state = {
    status: null,           // last /v1/status
    best: [],               // recent best-chain blocks, ascending height
    tree: new Map(),        // hash -> block summary; includes stale blocks
    reorgs: [],             // newest first
    txSeen: new Map(),      // txid -> tx object from `tx` events, oldest first
    mempool: null,          // last /v1/mempool
    peers: [],              // last /v1/peers
    network: null,          // last /v1/network, or null when the node lacks it
    networkCheckedAt: -Infinity,
    networkMissing: false,
    addressPrefix: null,    // learnt from miner addresses, e.g. "dev"
    freshHashes: new Set(), // blocks that arrived by event: highlighted once
  };

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  // Builds an element. `attrs` may hold `text`, `class`, `href`, `title`,
  // `data` (dataset) and `onclick`; everything else becomes an attribute.
  // Children are nodes or strings (strings become text nodes, never HTML).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'class') node.className = value;
      else if (key === 'data') Object.assign(node.dataset, value);
      else if (key === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === 'class') node.setAttribute('class', value);
      else node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  // A hover tooltip for an SVG element.
  function svgTitle(node, text) { node.append(svg('title', {}, text)); return node; }

  // JSON.parse turns integers above 2^53 into rounded floats. Amounts are u64
  // base units, so before parsing, integer literals of 16+ digits are quoted
  // (the string alternative in the regex skips over digits inside strings)
  // and later handled with BigInt.
  function parseJson(text) {
    return JSON.parse(text.replace(/"(?:[^"\\]|\\.)*"|-?\d{16,}(?![.\deE])/g,
      (token) => (token[0] === '"' ? token : `"${token}"`)));
  }

  // GET a /v1 path relative to the page. Resolves to {ok, status, data};
  // rejects only when the node cannot be reached.
  async function api(path) {
    const response = await fetch(`v1/${path}`, { headers: { accept: 'application/json' }, cache: 'no-store' });
    const text = await response.text();
    let data = null;
    try { data = text ? parseJson(text) : null; } catch (_) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  function errorText(result) {
    const error = result && result.data && result.data.error;
    return error && error.message ? `${error.code}: ${error.message}` : `HTTP ${result.status}`;
  }

  function toBig(value) {
    try { return BigInt(value); } catch (_) { return null; }
  }

  // Thousands separators on a non-negative integer string.
  const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');

  // Base units -> "1,234.5" coins, exact (BigInt), at most 8 decimals.
  function coins(value) {
    const units = toBig(value);
    if (units === null) return '?';
    const negative = units < 0n;
    const abs = negative ? -units : units;
    const whole = group((abs / COIN).toString());
    const frac = (abs % COIN).toString().padStart(8, '0').replace(/0+$/, '');
    return (negative ? '-' : '') + whole + (frac ? `.${frac}` : '');
  }

  const integer = (value) => { const big = toBig(value); return big === null ? '?' : group(big.toString()); };
  const short = (hash, n = 8) => (typeof hash === 'string' && hash.length > 2 * n + 1 ? `${hash.slice(0, n)}…${hash.slice(-4)}` : String(hash ?? ''));

  // Work of one block at this target, 2^256 / (target + 1), as "1.2 M hashes".
  function workPerBlock(targetHex) {
    const target = toBig(`0x${targetHex}`);
    if (target === null) return '';
    const work = (1n << 256n) / (target + 1n);
    const units = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
    let scaled = Number(work); let i = 0;
    while (scaled >= 1000 && i < units.length - 1) { scaled /= 1000; i += 1; }
    return `≈ ${scaled.toFixed(scaled < 10 ? 1 : 0)}${units[i] ? ` ${units[i]}` : ''} hashes`;
  }

  function ago(ms) {
    const seconds = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
    if (!Number.isFinite(seconds)) return '';
    if (seconds < 60) return `${seconds}s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
    return `${Math.floor(seconds / 86400)}d ago`;
  }
  // A "12s ago" label kept current by the ticker at the bottom of this file.
  const agoLabel = (ms) => el('span', { class: 'muted small', data: { ts: String(ms) }, title: new Date(Number(ms)).toLocaleString(), text: ago(ms) });

  function duration(seconds) {
    const s = Number(seconds);
    if (!Number.isFinite(s)) return '';
    if (s < 120) return `${s}s`;
    if (s < 7200) return `${Math.floor(s / 60)}m`;
    return `${Math.floor(s / 3600)}h`;
  }

  const link = (kind, id, text, extraClass) => el('a', { href: `#/${kind}/${encodeURIComponent(id)}`, class: `mono ${extraClass || ''}`, title: String(id), text: text ?? short(id) });
  const addressLink = (address) => (address ? link('address', address, short(address, 10), 'ellip') : el('span', { class: 'muted', text: '—' }));

  // Learns the chain's address prefix (the part before the last "1") from any
  // address the API returns, so the search box can recognise addresses.
  function learnPrefix(address) {
    if (state.addressPrefix || typeof address !== 'string') return;
    const cut = address.lastIndexOf('1');
    if (cut > 0) state.addressPrefix = address.slice(0, cut).toLowerCase();
  }

  // --------------------------------------------------------- the block tree

  // Keeps a summary of every block we hear about, including blocks that a
  // reorg later disconnects, so the fork view can draw branches that the
  // node's best-chain routes no longer return.
  function remember(block) {
    if (!block || typeof block.hash !== 'string') return;
    const known = state.tree.get(block.hash) || {};
    state.tree.set(block.hash, {
      ...known,
      hash: block.hash,
      height: Number(block.height),
      prev_hash: block.prev_hash,
      timestamp: Number(block.timestamp),
      miner: block.miner,
      tx_count: block.tx_count !== undefined ? Number(block.tx_count) : (Array.isArray(block.txs) ? block.txs.length : known.tx_count),
    });
    learnPrefix(block.miner);
    if (state.tree.size > TREE_KEEP) {
      // Forget the lowest blocks first; they are far outside every view.
      const byHeight = [...state.tree.values()].sort((a, b) => a.height - b.height);
      for (const old of byHeight.slice(0, state.tree.size - TREE_KEEP)) state.tree.delete(old.hash);
    }
  }

  // Hashes on the best chain, walking back from the tip through the tree.
  function bestChainHashes() {
    const best = new Set();
    let hash = state.status && state.status.tip;
    while (hash && state.tree.has(hash) && !best.has(hash)) {
      best.add(hash);
      hash = state.tree.get(hash).prev_hash;
    }
    return best;
  }

  // ------------------------------------------------------------------ poll

  let refreshRunning = false;
  let refreshAgain = false;

  // Re-reads everything the overview shows. Overlapping calls are folded
  // into one follow-up run, so a burst of events costs at most two polls.
  async function refresh() {
    if (refreshRunning) { refreshAgain = true; return; }
    refreshRunning = true;
    try {
      do {
        refreshAgain = false;
        await refreshOnce();
      } while (refreshAgain);
    } finally {
      refreshRunning = false;
    }
  }

  async function refreshOnce() {
    let status;
    try {
      status = await api('status');
    } catch (_) {
      setConn('down', 'node unreachable');
      return;
    }
    if (!status.ok || !status.data) return;
    state.status = status.data;
    if (events && events.readyState === EventSource.OPEN) setConn('live', 'live');
    const from = Math.max(0, Number(state.status.height) - CHART_BLOCKS + 1);
    const wantNetwork = !state.networkMissing || Date.now() - state.networkCheckedAt > NETWORK_RETRY_MS;
    const [blocks, mempool, peers, network] = await Promise.allSettled([
      api(`blocks?from=${from}&limit=${CHART_BLOCKS}`),
      api('mempool'),
      api('peers'),
      wantNetwork ? api('network') : Promise.resolve(null),
    ]);
    const value = (settled) => (settled.status === 'fulfilled' && settled.value && settled.value.ok ? settled.value.data : null);
    const blockList = value(blocks);
    if (Array.isArray(blockList)) {
      blockList.forEach(remember);
      state.best = blockList.slice().sort((a, b) => Number(a.height) - Number(b.height));
    }
    if (value(mempool)) state.mempool = value(mempool);
    if (Array.isArray(value(peers))) state.peers = value(peers);
    if (wantNetwork) {
      state.networkCheckedAt = Date.now();
      const result = network.status === 'fulfilled' ? network.value : null;
      // Only a 404 means "this node has no network route"; other failures
      // keep the last good answer and try again next poll.
      if (result && result.status === 404) { state.networkMissing = true; state.network = null; }
      else if (result && result.ok) { state.networkMissing = false; state.network = result.data; }
    }
    renderAll();
  }

  // Runs refresh soon, but once for a burst of events.
  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 250);
  }

  // ---------------------------------------------------------------- events

  let events = null;

  function setConn(stateName, text) {
    const node = $('conn');
    node.dataset.state = stateName;
    node.textContent = text;
  }

  // EventSource reconnects by itself after network errors, but gives up for
  // good on an HTTP error status; then we start a new one after a pause.
  function connectEvents() {
    events = new EventSource('v1/events');
    events.addEventListener('open', () => setConn('live', 'live'));
    events.addEventListener('error', () => {
      if (events.readyState === EventSource.CLOSED) {
        setConn('down', 'events off · polling');
        setTimeout(connectEvents, 10000);
      } else {
        setConn('connecting', 'reconnecting');
      }
    });
    const on = (name, handler) => events.addEventListener(name, (event) => {
      let data;
      try { data = parseJson(event.data); } catch (_) { return; }
      handler(data);
    });
    on('block', onBlockEvent);
    on('tx', onTxEvent);
    on('reorg', onReorgEvent);
  }

  function onBlockEvent(block) {
    remember(block);
    if (state.freshHashes.size > 100) state.freshHashes.clear(); // only ever a highlight
    state.freshHashes.add(block.hash);
    // A block on top of the tip we know extends the best chain: show it now,
    // without waiting for the poll. Anything else (a side branch, or a block
    // after a gap) is settled by the poll that follows.
    const status = state.status;
    if (status && block.prev_hash === status.tip && Number(block.height) === Number(status.height) + 1) {
      status.tip = block.hash;
      status.height = Number(block.height);
      status.target = block.target || status.target;
      state.best = state.best.filter((b) => Number(b.height) < status.height).concat([block]).slice(-CHART_BLOCKS);
      renderAll();
    }
    refreshSoon();
    refreshDetailOnBlock(false);
  }

  function onTxEvent(tx) {
    if (!tx || typeof tx.txid !== 'string') return;
    learnPrefix(tx.from);
    state.txSeen.delete(tx.txid);
    state.txSeen.set(tx.txid, tx);
    if (state.txSeen.size > 500) state.txSeen.delete(state.txSeen.keys().next().value);
    // Show it at once, then let the poll confirm the mempool's size.
    if (state.mempool && Array.isArray(state.mempool.txids) && !state.mempool.txids.includes(tx.txid)) {
      state.mempool.txids.push(tx.txid);
      state.mempool.count = Number(state.mempool.count || 0) + 1;
    }
    renderMempool();
    refreshSoon();
  }

  // The node sends `reorg` after the `block` events of the new branch, with
  // `disconnected` and `connected` as lists of block hashes. The abandoned
  // blocks stay in the tree (we saw them as they arrived) and are drawn as a
  // stale branch from now on, because the walk from the new tip skips them.
  function onReorgEvent(reorg) {
    const hashes = (list) => (Array.isArray(list) ? list.filter((hash) => typeof hash === 'string') : []);
    const disconnected = hashes(reorg.disconnected);
    const connected = hashes(reorg.connected);
    state.reorgs.unshift({
      at: Date.now(), fork_height: reorg.fork_height, old_tip: reorg.old_tip, new_tip: reorg.new_tip,
      n_disconnected: disconnected.length, n_connected: connected.length,
    });
    state.reorgs.length = Math.min(state.reorgs.length, REORGS_KEEP);
    // Blocks of either branch that this page never saw (it opened after
    // them) are looked up, so the tree can still draw both branches.
    for (const hash of disconnected.concat(connected)) {
      if (!state.tree.has(hash)) api(`blocks/${hash}`).then((r) => { if (r.ok) { remember(r.data); renderForks(); } }).catch(() => {});
    }
    renderForks();
    refreshSoon();
    refreshDetailOnBlock(true);
  }

  // ------------------------------------------------------- overview panels

  function renderAll() {
    renderStatus();
    renderChart();
    renderBlocks();
    renderMempool();
    renderForks();
    renderPeers();
    renderNetwork();
  }

  function renderStatus() {
    const s = state.status;
    if (!s) return;
    $('chain-name').textContent = s.chain ? `· ${s.chain}` : '';
    $('height').textContent = integer(s.height);
    const tip = $('tip');
    tip.textContent = s.tip || '';
    tip.title = s.tip || '';
    tip.href = `#/block/${encodeURIComponent(s.tip || '')}`;
    $('target').textContent = s.target || '';
    $('target').title = s.target || '';
    $('work').textContent = s.target ? workPerBlock(s.target) : '';
    const peerCount = Array.isArray(s.peers) ? s.peers.length : s.peers;
    const mempoolCount = s.mempool && typeof s.mempool === 'object' ? s.mempool.count : s.mempool;
    $('summary').textContent = `${integer(peerCount ?? 0)} peers · ${integer(mempoolCount ?? 0)} txs pending`;
    const bits = [s.syncing ? 'syncing' : null, s.mining ? 'mining' : 'not mining', s.version ? `v${s.version}` : null, s.node_id ? `id ${short(s.node_id)}` : null];
    $('node-info').textContent = bits.filter(Boolean).join(' · ');
    $('node-info').title = s.node_id || '';
  }

  // Two small bar charts, one above the other: seconds since the previous
  // block, and transactions per block, for the blocks the poll fetched.
  function renderChart() {
    const chart = $('chart');
    const blocks = state.best;
    // Drawn at the figure's pixel width so the labels stay legible.
    const width = Math.max(200, chart.parentElement.clientWidth || 600);
    const panel = 56; const gap = 22; const top = 14;
    const height = top + panel * 2 + gap + 4;
    chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
    chart.setAttribute('width', width);
    chart.setAttribute('height', height);
    chart.replaceChildren();
    if (blocks.length < 2) {
      chart.append(svg('text', { x: 4, y: 20 }, 'waiting for blocks…'));
      return;
    }
    // The gap after genesis is the time since the chain spec was written,
    // not a block time; drawing it would flatten every real bar to nothing.
    const rows = blocks.slice(1).map((block, i) => ({
      height: block.height,
      seconds: blocks[i].height === 0 ? 0 : Math.max(0, (Number(block.timestamp) - Number(blocks[i].timestamp)) / 1000),
      txs: Number(block.tx_count ?? (Array.isArray(block.txs) ? block.txs.length : 0)),
    }));
    const slot = width / CHART_BLOCKS;
    const drawPanel = (y0, key, cls, label) => {
      const max = Math.max(1, ...rows.map((r) => r[key]));
      chart.append(svg('text', { x: 2, y: y0 - 3 }, `${label} (max ${key === 'seconds' ? max.toFixed(1) : max})`));
      chart.append(svg('line', { x1: 0, x2: width, y1: y0 + panel, y2: y0 + panel, class: 'axis' }));
      rows.forEach((row, i) => {
        const h = Math.max(row[key] > 0 ? 1.5 : 0, (row[key] / max) * panel);
        const x = width - (rows.length - i) * slot;
        const bar = svg('rect', { x: x + 1, y: y0 + panel - h, width: Math.max(1, slot - 2), height: h, class: cls });
        chart.append(svgTitle(bar, `#${row.height}: ${row.seconds.toFixed(1)} s, ${row.txs} txs`));
      });
    };
    drawPanel(top, 'seconds', 'bar-time', 'block time s');
    drawPanel(top + panel + gap, 'txs', 'bar-txs', 'txs');
  }

  function renderBlocks() {
    const list = $('blocks');
    const rows = state.best.slice(-LATEST_BLOCKS).reverse();
    if (!rows.length) { list.replaceChildren(el('li', { class: 'empty', text: 'no blocks yet' })); return; }
    list.replaceChildren(...rows.map((block) => {
      const txCount = block.tx_count ?? (Array.isArray(block.txs) ? block.txs.length : '?');
      const fresh = state.freshHashes.delete(block.hash);
      return el('li', {
        class: `clickable${fresh ? ' fresh' : ''}`, data: { hash: block.hash, height: String(block.height) },
        onclick: () => { location.hash = `#/block/${block.hash}`; },
      },
      el('span', { class: 'mono', text: `#${block.height}` }),
      el('span', {}, link('block', block.hash, short(block.hash, 12), 'ellip')),
      el('span', { class: 'muted small' }, `${txCount} tx · `, agoLabel(block.timestamp)));
    }));
  }

  function renderMempool() {
    const m = state.mempool;
    if (!m) return;
    const txids = Array.isArray(m.txids) ? m.txids : [];
    $('mempool-size').textContent = `${integer(m.count ?? txids.length)} txs · ${integer(m.bytes ?? 0)} bytes`;
    // Newest first: txs we saw arrive by event (most recent first), then the
    // rest of the mempool in the node's order. Only txs still pending count.
    const pending = new Set(txids);
    const newest = [...state.txSeen.keys()].reverse().filter((id) => pending.has(id));
    const rest = txids.filter((id) => !state.txSeen.has(id));
    const shown = newest.concat(rest).slice(0, MEMPOOL_ROWS);
    const list = $('mempool-list');
    if (!shown.length) { list.replaceChildren(el('li', { class: 'empty', text: 'mempool is empty' })); return; }
    list.replaceChildren(...shown.map((txid) => {
      const tx = state.txSeen.get(txid);
      return el('li', { class: 'clickable', data: { txid }, onclick: () => { location.hash = `#/tx/${txid}`; } },
        el('span', { class: 'muted small', text: tx ? `n ${tx.nonce}` : '' }),
        el('span', {}, link('tx', txid, short(txid, 12), 'ellip')),
        el('span', { class: 'small num', text: tx ? coins(tx.amount) : '' }));
    }));
  }

  // The block tree: one column per height, the best chain on the first lane
  // and each stale branch on a lane below it, with an edge to its parent.
  function renderForks() {
    const holder = $('fork-tree');
    const tipHeight = state.status ? Number(state.status.height) : 0;
    const columnWidth = 62; const laneHeight = 40; const boxW = 50; const boxH = 28; const pad = 6;
    // As many heights as fit the card, so the tree stays readable on phones.
    const columns = Math.max(5, Math.min(24, Math.floor(((holder.clientWidth || 600) - pad) / columnWidth)));
    const blocks = [...state.tree.values()].filter((b) => b.height > tipHeight - columns && b.height <= tipHeight + 2);
    const maxHeight = Math.max(tipHeight, ...blocks.map((b) => b.height));
    const minHeight = maxHeight - columns + 1;
    const shown = blocks.filter((b) => b.height >= minHeight).sort((a, b) => a.height - b.height || (a.timestamp - b.timestamp));
    const best = bestChainHashes();
    const lane = new Map();
    const laneUsed = new Map(); // lane -> highest height placed on it
    for (const block of shown) {
      if (best.has(block.hash)) { lane.set(block.hash, 0); continue; }
      // A stale block continues its parent's lane when the parent is itself
      // stale and that lane is free at this height. Otherwise it takes the
      // first lane left empty for a column before it (the gap keeps two
      // unrelated branches from looking like one), so the tree stays short.
      const parentLane = lane.get(block.prev_hash);
      let chosen = parentLane > 0 && (laneUsed.get(parentLane) ?? -1) < block.height ? parentLane : undefined;
      if (chosen === undefined) {
        chosen = 1;
        while ((laneUsed.get(chosen) ?? -Infinity) >= block.height - 1) chosen += 1;
      }
      lane.set(block.hash, chosen);
      laneUsed.set(chosen, block.height);
    }
    const lanes = Math.max(0, ...lane.values()) + 1;
    const width = columns * columnWidth + pad;
    const height = lanes * laneHeight + 16;
    const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'recent block tree' });
    const pos = (block) => ({ x: pad + (block.height - minHeight) * columnWidth, y: 16 + lane.get(block.hash) * laneHeight });
    for (let h = minHeight; h <= maxHeight; h += 1) {
      if ((h - minHeight) % 2 === 0) root.append(svg('text', { x: pad + (h - minHeight) * columnWidth, y: 10 }, `#${h}`));
    }
    for (const block of shown) {
      const parent = state.tree.get(block.prev_hash);
      if (!parent || !lane.has(parent.hash)) continue;
      const a = pos(parent); const b = pos(block);
      root.append(svg('path', { class: 'edge', d: `M${a.x + boxW} ${a.y + boxH / 2} C${a.x + boxW + 8} ${a.y + boxH / 2} ${b.x - 8} ${b.y + boxH / 2} ${b.x} ${b.y + boxH / 2}` }));
    }
    for (const block of shown) {
      const { x, y } = pos(block);
      const isBest = best.has(block.hash);
      const cls = `node${isBest ? '' : ' stale'}${state.status && block.hash === state.status.tip ? ' tip' : ''}`;
      const group = svg('g', { class: cls, 'data-hash': block.hash });
      group.append(svg('rect', { x, y, width: boxW, height: boxH, rx: 4 }));
      // Proof-of-work hashes all begin with zeros, so the label is the
      // height and the hash's distinguishing end, never its start.
      group.append(svg('text', { x: x + boxW / 2, y: y + 12, 'text-anchor': 'middle', class: 'tree-height' }, `#${block.height}`));
      group.append(svg('text', { x: x + boxW / 2, y: y + 24, 'text-anchor': 'middle', class: 'tree-hash' }, `…${block.hash.slice(-4)}`));
      svgTitle(group, `#${block.height} ${block.hash}${isBest ? '' : ' (stale)'} · ${block.tx_count ?? '?'} txs`);
      group.addEventListener('click', () => { location.hash = `#/block/${block.hash}`; });
      root.append(group);
    }
    holder.replaceChildren(root);

    const log = $('reorgs');
    if (!state.reorgs.length) { log.replaceChildren(el('li', { class: 'empty', text: 'no reorgs seen since this page opened' })); return; }
    log.replaceChildren(...state.reorgs.map((r) => el('li', {},
      el('span', { class: 'muted', text: new Date(r.at).toTimeString().slice(0, 8) }),
      el('span', { class: 'ellip' },
        `reorg at #${r.fork_height}: −${r.n_disconnected} +${r.n_connected} blocks, tip `,
        r.old_tip ? link('block', r.old_tip, short(r.old_tip, 6)) : '?', ' → ',
        r.new_tip ? link('block', r.new_tip, short(r.new_tip, 6)) : '?'))));
  }

  function renderPeers() {
    const body = $('peers').tBodies[0];
    $('peer-count').textContent = `${state.peers.length}`;
    if (!state.peers.length) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'no peers connected' })));
      return;
    }
    body.replaceChildren(...state.peers.map((p) => el('tr', { data: { nodeId: p.node_id || '' } },
      el('td', { title: `${p.addr} (${p.direction})`, text: `${p.direction === 'inbound' ? '← ' : '→ '}${p.addr}` }),
      el('td', { class: 'mono node-cell', title: p.node_id || '', text: String(p.node_id || '').slice(0, 8) }),
      el('td', { class: 'num', text: integer(p.height ?? 0) }),
      el('td', { class: 'num', text: p.ping_ms === null || p.ping_ms === undefined ? '—' : `${p.ping_ms} ms` }),
      el('td', { class: 'num', text: duration(p.connected_secs) }))));
  }

  // The network as far as this node knows it: this node in the middle, its
  // peers on an inner ring, and peers-of-peers (from /v1/network, when the
  // node has that route) on an outer ring. Edges are undirected.
  function renderNetwork() {
    const graph = $('network');
    const selfId = (state.network && state.network.node_id) || (state.status && state.status.node_id) || 'this node';
    const nodes = new Map([[selfId, { id: selfId, kind: 'self', label: 'this node' }]]);
    const edges = new Map();
    const addEdge = (a, b, direct) => {
      if (!a || !b || a === b) return;
      const key = a < b ? `${a} ${b}` : `${b} ${a}`;
      edges.set(key, { a, b, direct: direct || (edges.get(key) || {}).direct });
    };
    const addNode = (id, kind, info) => {
      if (!id) return;
      const known = nodes.get(id);
      if (!known) { nodes.set(id, { id, kind, ...info }); return; }
      // A node first heard of second-hand may turn out to be a direct peer;
      // this node itself always stays "self".
      if (known.kind === 'known' && kind === 'peer') known.kind = 'peer';
      for (const [key, value] of Object.entries(info)) if (value !== undefined && known[key] === undefined) known[key] = value;
    };
    const directPeers = state.network && Array.isArray(state.network.peers) ? state.network.peers.concat(state.peers) : state.peers;
    for (const p of directPeers) {
      const id = p.node_id || p.addr;
      addNode(id, 'peer', { addr: p.addr, height: p.height });
      addEdge(selfId, id, true);
    }
    for (const k of (state.network && Array.isArray(state.network.known)) ? state.network.known : []) {
      addNode(k.node_id, 'known', { addr: k.addr });
      for (const other of Array.isArray(k.peers) ? k.peers : []) {
        addNode(other, 'known', {});
        addEdge(k.node_id, other, false);
      }
    }
    const inner = [...nodes.values()].filter((n) => n.kind === 'peer');
    const outer = [...nodes.values()].filter((n) => n.kind === 'known');
    const size = outer.length ? 320 : 240; const center = size / 2;
    const place = (list, radius, offset) => list.forEach((n, i) => {
      const angle = offset + (2 * Math.PI * i) / list.length - Math.PI / 2;
      n.x = center + radius * Math.cos(angle); n.y = center + radius * Math.sin(angle);
    });
    nodes.get(selfId).x = center; nodes.get(selfId).y = center;
    place(inner, outer.length ? 70 : 90, 0);
    place(outer, 140, outer.length ? Math.PI / outer.length : 0);
    graph.setAttribute('viewBox', `0 0 ${size} ${size}`);
    graph.replaceChildren();
    for (const e of edges.values()) {
      const a = nodes.get(e.a); const b = nodes.get(e.b);
      graph.append(svg('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: `edge${e.direct ? ' direct' : ''}` }));
    }
    const labelled = nodes.size <= 24; // beyond that the labels only overlap
    for (const n of nodes.values()) {
      const group = svg('g', { class: n.kind });
      group.append(svg('circle', { cx: n.x, cy: n.y, r: n.kind === 'self' ? 9 : 6 }));
      if (labelled || n.kind === 'self') {
        group.append(svg('text', { x: n.x, y: n.y + (n.y >= center ? 18 : -11), 'text-anchor': 'middle' }, n.kind === 'self' ? 'this node' : short(n.id, 4)));
      }
      svgTitle(group, [n.id, n.addr, n.height !== undefined ? `height ${n.height}` : null].filter(Boolean).join(' · '));
      graph.append(group);
    }
    $('network-note').textContent = state.networkMissing
      ? 'direct peers only: this node does not serve /v1/network'
      : `${inner.length} direct peers, ${outer.length} more known through them`;
  }

  // ---------------------------------------------------------- detail views

  // Views are addressed by the URL hash (#/block/<hash or height>,
  // #/tx/<txid>, #/address/<addr>) so they can be linked and bookmarked.
  function currentRoute() {
    const match = /^#\/(block|tx|address)\/([^/?#]+)$/.exec(location.hash);
    return match ? { kind: match[1], id: decodeURIComponent(match[2]) } : null;
  }

  // Each render gets a number; an answer that arrives after the user moved
  // on to another view is dropped instead of overwriting it.
  let detailSeq = 0;

  async function renderDetail(quiet) {
    const route = currentRoute();
    const detail = $('detail');
    const seq = ++detailSeq;
    if (!route) { detail.hidden = true; detail.replaceChildren(); delete detail.dataset.kind; delete detail.dataset.loaded; return; }
    detail.hidden = false;
    if (!quiet) {
      delete detail.dataset.loaded;
      detail.replaceChildren(detailHead(`${route.kind} ${short(route.id, 12)}`), el('p', { class: 'muted', text: 'loading…' }));
      detail.dataset.kind = route.kind;
      detail.dataset.id = route.id;
      const top = detail.getBoundingClientRect().top;
      if (top < 0 || top > window.innerHeight) detail.scrollIntoView({ block: 'start' });
    }
    let parts;
    try {
      if (route.kind === 'block') parts = await blockView(route.id);
      else if (route.kind === 'tx') parts = await txView(route.id);
      else parts = await addressView(route.id);
    } catch (_) {
      parts = [detailHead(route.kind), el('p', { class: 'error', text: 'the node cannot be reached' })];
    }
    if (seq !== detailSeq) return;
    detail.replaceChildren(...parts);
    detail.dataset.kind = route.kind;
    detail.dataset.id = route.id;
    detail.dataset.loaded = 'true';
  }

  // Keeps an open view current without flashing "loading": a new block can
  // confirm a pending tx or change a balance; a reorg can also move a block
  // off the best chain.
  function refreshDetailOnBlock(afterReorg) {
    const route = currentRoute();
    if (route && (afterReorg || route.kind !== 'block')) renderDetail(true);
  }

  function detailHead(title) {
    return el('div', { class: 'detail-head' },
      el('h2', { class: 'ellip', text: title }),
      el('a', { class: 'close', href: '#/', title: 'close', 'aria-label': 'close', text: '×' }));
  }

  const kv = (pairs) => el('dl', { class: 'kv' }, ...pairs.filter(Boolean).flatMap(([key, value]) => [
    el('dt', { text: key }),
    el('dd', { class: typeof value === 'string' ? 'mono wrap' : '' }, value),
  ]));

  const notFound = (title, result) => [detailHead(title), el('p', { class: 'error', text: result.status === 404 ? 'not found' : errorText(result) })];

  async function blockView(id) {
    const result = await api(`blocks/${encodeURIComponent(id)}`);
    if (!result.ok || !result.data) return notFound(`block ${short(id, 12)}`, result);
    const b = result.data;
    remember(b);
    const txs = Array.isArray(b.txs) ? b.txs : [];
    // On the best chain exactly when the best chain's block at its height is
    // this block; asking the node also covers blocks older than our tree.
    const atHeight = await api(`blocks/${encodeURIComponent(b.height)}`).catch(() => null);
    const onBest = Boolean(atHeight && atHeight.ok && atHeight.data && atHeight.data.hash === b.hash);
    return [
      detailHead(`Block #${b.height}`),
      kv([
        ['Hash', b.hash],
        ['Chain', el('span', { class: `badge ${onBest ? 'best' : 'stale'}`, text: onBest ? 'best chain' : 'not on the best chain' })],
        ['Previous', b.prev_hash ? link('block', b.prev_hash, b.prev_hash, 'wrap') : '—'],
        ['Time', el('span', {}, `${new Date(Number(b.timestamp)).toLocaleString()} `, agoLabel(b.timestamp))],
        ['Miner', addressLink(b.miner)],
        ['Reward', `${coins(b.reward)} coins`],
        ['Target', b.target],
        ['Nonce', integer(b.nonce)],
        ['Merkle root', b.merkle_root],
        b.size !== undefined ? ['Size', `${integer(b.size)} bytes`] : null,
        ['Transactions', integer(txs.length)],
      ]),
      el('h3', { text: `Transactions (${txs.length})` }),
      txs.length ? txTable(txs.map((tx) => ({ tx }))) : el('p', { class: 'muted', text: 'no transactions in this block' }),
    ];
  }

  async function txView(txid) {
    const result = await api(`txs/${encodeURIComponent(txid)}`);
    if (!result.ok || !result.data) return notFound(`tx ${short(txid, 12)}`, result);
    const { tx = {}, status, block_hash: blockHash, block_height: blockHeight, confirmations } = result.data;
    learnPrefix(tx.from);
    return [
      detailHead('Transaction'),
      kv([
        ['Txid', tx.txid || txid],
        ['Status', el('span', { class: `badge ${status}`, text: status || '?' })],
        blockHash ? ['Block', el('span', {}, link('block', blockHash, `#${blockHeight} ${short(blockHash, 10)}`))] : null,
        confirmations !== undefined && confirmations !== null ? ['Confirmations', integer(confirmations)] : null,
        ['From', addressLink(tx.from)],
        ['To', addressLink(tx.to)],
        ['Amount', `${coins(tx.amount)} coins`],
        ['Fee', `${coins(tx.fee)} coins`],
        ['Nonce', integer(tx.nonce)],
        tx.memo ? ['Memo', el('span', { class: 'wrap', text: tx.memo })] : null,
        ['Sender key', tx.from_pubkey || ''],
        ['Signature', tx.signature || ''],
      ]),
    ];
  }

  async function addressView(address) {
    const [account, history] = await Promise.all([
      api(`accounts/${encodeURIComponent(address)}`),
      api(`accounts/${encodeURIComponent(address)}/txs?limit=50`),
    ]);
    if (!account.ok || !account.data) return notFound(`address ${short(address, 10)}`, account);
    const a = account.data;
    learnPrefix(a.address);
    const items = history.ok && Array.isArray(history.data) ? history.data : [];
    return [
      detailHead('Address'),
      kv([
        ['Address', a.address || address],
        ['Balance', `${coins(a.balance)} coins`],
        ['Nonce', `${integer(a.nonce)} confirmed · next ${integer(a.next_nonce ?? a.nonce)}`],
      ]),
      el('h3', { text: `History (newest ${items.length})` }),
      history.ok ? (items.length ? txTable(items, a.address || address) : el('p', { class: 'muted', text: 'no transactions' }))
        : el('p', { class: 'error', text: errorText(history) }),
    ];
  }

  // A table of txs. Items are `{tx, status, block_height}` as the tx and
  // history routes return them, or bare tx objects. With `viewer` set (an
  // address view) the direction and counterparty are shown instead of from
  // and to. The cell classes let the phone layout (app.css) fold each row
  // into two lines instead of squeezing five columns.
  function txTable(items, viewer) {
    const head = viewer ? ['Txid', '', 'Counterparty', 'Amount', 'Status'] : ['Txid', 'From', 'To', 'Amount', 'Fee'];
    const classes = ['c-id', 'c-a', 'c-b', 'c-amount num', 'c-e num'];
    const rows = items.map((item) => {
      const tx = item && item.tx ? item.tx : item || {};
      let a; let b; let amount; let last;
      if (viewer) {
        const outgoing = tx.from === viewer;
        const direction = outgoing && tx.to === viewer ? 'self' : outgoing ? 'out' : 'in';
        const status = item.status || tx.status;
        a = el('span', { class: `badge ${direction}`, text: direction });
        b = addressLink(outgoing ? tx.to : tx.from);
        amount = `${direction === 'out' ? '−' : ''}${coins(tx.amount)}`;
        last = el('span', { class: `badge ${status}`, text: status === 'confirmed' && item.block_height !== undefined && item.block_height !== null ? `#${item.block_height}` : status || '?' });
      } else {
        a = addressLink(tx.from);
        b = addressLink(tx.to);
        amount = coins(tx.amount);
        last = el('span', { 'data-label': 'fee', text: coins(tx.fee) });
      }
      const cells = [link('tx', tx.txid, short(tx.txid, 8), 'ellip'), a, b, el('span', { title: `${amount} coins, fee ${coins(tx.fee)}`, text: amount }), last];
      return el('tr', { data: { txid: tx.txid || '' } }, ...cells.map((cell, i) => el('td', { class: classes[i] }, cell)));
    });
    const widths = viewer ? ['27%', '9%', '27%', '23%', '14%'] : ['22%', '22%', '22%', '22%', '12%'];
    return el('table', { class: 'table txs' },
      el('colgroup', {}, ...widths.map((w) => { const col = el('col'); col.style.width = w; return col; })),
      el('thead', {}, el('tr', {}, ...head.map((h, i) => el('th', { class: classes[i], text: h })))),
      el('tbody', {}, ...rows));
  }

  // ---------------------------------------------------------------- search

  // One box for everything: a height (digits), a txid or block hash (64 hex:
  // both share a shape, so the tx route is asked first, then the block
  // route), or an address (bech32m with this chain's prefix).
  async function search(raw) {
    const query = raw.trim();
    const message = (text) => { const m = $('search-msg'); m.textContent = text; m.hidden = !text; };
    message('');
    if (!query) return;
    try {
      if (/^\d{1,19}$/.test(query)) {
        const block = await api(`blocks/${query}`);
        if (block.ok && block.data) { location.hash = `#/block/${block.data.hash}`; return; }
        message(`no block at height ${query}`);
      } else if (/^[0-9a-fA-F]{64}$/.test(query)) {
        const id = query.toLowerCase();
        const tx = await api(`txs/${id}`);
        if (tx.ok) { location.hash = `#/tx/${id}`; return; }
        const block = await api(`blocks/${id}`);
        if (block.ok) { location.hash = `#/block/${id}`; return; }
        message('no transaction or block with that id');
      } else if (/^[a-z0-9]{1,83}1[02-9ac-hj-np-z]{6,}$/i.test(query)) {
        const address = query.toLowerCase();
        const prefix = address.slice(0, address.lastIndexOf('1'));
        if (state.addressPrefix && prefix !== state.addressPrefix) {
          message(`addresses on this chain start with ${state.addressPrefix}1`);
          return;
        }
        location.hash = `#/address/${address}`;
      } else {
        message('enter a txid or block hash (64 hex), a height, or an address');
      }
    } catch (_) {
      message('the node cannot be reached');
    }
  }

  // ------------------------------------------------------------------ start

  function start() {
    $('search-form').addEventListener('submit', (event) => {
      event.preventDefault();
      search($('search').value);
    });
    window.addEventListener('hashchange', () => renderDetail(false));
    // The chart and the fork tree are drawn for the card's width. Both are
    // cheap, so they are redrawn in the resize event itself (before the next
    // paint) rather than debounced, and a resized window never shows them
    // stretched.
    window.addEventListener('resize', () => { renderChart(); renderForks(); });
    // Keeps every "12s ago" label current without re-rendering the lists.
    setInterval(() => {
      for (const node of document.querySelectorAll('[data-ts]')) node.textContent = ago(node.dataset.ts);
    }, 1000);
    setInterval(refresh, POLL_MS);
    connectEvents();
    refresh();
    renderDetail(false);
  }

  start();
})();
