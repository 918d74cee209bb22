// The Chorus explorer page. It reads one node through its JSON-RPC over a WebSocket: method
// calls, and the chain_subscribeHeads and chain_subscribeFinalized subscriptions, which move
// the head and finalized heights on screen as they change. It builds every element with
// textContent (never HTML from data) and fetches nothing but config.json from its own origin.
"use strict";

(() => {
  const LATEST_BLOCKS = 10;
  const STATUS_EVERY_MS = 5000;
  const CALL_TIMEOUT_MS = 10000;
  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;

  const $ = (id) => document.getElementById(id);

  // el("a", {href: "#/"}, "text", child...): an element with attributes and children.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // A node that cannot be reached (yet): the banner says so and calls wait for it.
  class Unreachable extends Error {}

  // One error from the node: its JSON-RPC code and message.
  class RpcError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  // JSON-RPC over one WebSocket, reconnecting with backoff; subscriptions are made again on
  // every connection.
  class Rpc {
    constructor(url, onState) {
      this.url = url;
      this.onState = onState;
      this.pending = new Map();
      this.handlers = new Map();
      this.subscriptions = [];
      this.nextId = 1;
      this.open = false;
      this.retryMs = RETRY_MIN_MS;
      this.connect();
    }

    connect() {
      let socket;
      try {
        socket = new WebSocket(this.url);
      } catch (error) {
        this.closed(String(error));
        return;
      }
      this.socket = socket;
      socket.onopen = () => {
        this.open = true;
        this.retryMs = RETRY_MIN_MS;
        for (const method of this.subscriptions) this.call(method).catch(() => {});
        this.onState({ open: true });
      };
      socket.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        this.receive(message);
      };
      socket.onclose = () => this.closed();
    }

    closed() {
      this.open = false;
      for (const { reject } of this.pending.values()) reject(new Unreachable("the node closed the connection"));
      this.pending.clear();
      const retryMs = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      this.onState({ open: false, retryMs });
      setTimeout(() => this.connect(), retryMs);
    }

    receive(message) {
      if (message.id !== undefined && this.pending.has(message.id)) {
        const { resolve, reject } = this.pending.get(message.id);
        this.pending.delete(message.id);
        if (message.error) reject(new RpcError(message.error.code, message.error.message));
        else resolve(message.result);
      } else if (message.method && message.params) {
        const handler = this.handlers.get(message.method);
        if (handler) handler(message.params.result);
      }
    }

    call(method, params = []) {
      return new Promise((resolve, reject) => {
        if (!this.open) {
          reject(new Unreachable(`not connected to ${this.url}`));
          return;
        }
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
        setTimeout(() => {
          if (this.pending.delete(id)) reject(new Error(`${method}: no answer within ${CALL_TIMEOUT_MS / 1000} s`));
        }, CALL_TIMEOUT_MS);
      });
    }

    // Calls `handler` with each notification `notification` of the subscription `method`.
    subscribe(method, notification, handler) {
      this.handlers.set(notification, handler);
      this.subscriptions.push(method);
      if (this.open) this.call(method).catch(() => {});
    }
  }

  // What the page knows of the chain, kept current by the subscriptions and node_status.
  const state = { head: null, finalized: null, status: null, engine: null, connected: false };
  let rpc;
  // The view on screen: re-rendered on new heads when it shows something that changes. Each
  // render keeps the view it was started for and drops its result if another view replaced it
  // meanwhile (a search, a click, a new head's refresh still waiting on the node).
  let view = { name: "home", refresh: null };
  const stale = (mine) => view !== mine;

  // Formatting.
  const short = (hash) => (hash && hash.length > 20 ? `${hash.slice(0, 10)}…${hash.slice(-8)}` : hash || "");
  const amount = (text) => String(text).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  function age(millis) {
    const secs = Math.max(0, Math.round((Date.now() - millis) / 1000));
    if (secs < 60) return `${secs} s ago`;
    if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
    return `${Math.floor(secs / 3600)} h ago`;
  }
  const time = (millis) => new Date(millis).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const blockLink = (id, text) => el("a", { href: `#/block/${id}`, class: "block-link" }, text === undefined ? id : text);
  const txLink = (hash, full) => el("a", { href: `#/tx/${hash}`, class: "hash tx-link" }, full ? hash : short(hash));
  const accountLink = (address, full) =>
    el("a", { href: `#/account/${address}`, class: "hash account-link" }, full ? address : short(address));
  const badge = (status) => el("span", { class: `badge ${status}` }, status);
  // Digits are a height, unless there are 64 of them: a hash that happens to have no letter.
  const isHeight = (text) => /^\d{1,20}$/.test(text);
  const isFinal = (height) => state.finalized !== null && height <= state.finalized.height;

  function card(title, id, ...children) {
    return el("section", { class: "card", id }, el("h2", {}, title), ...children);
  }

  function table(headings, rows, id) {
    if (rows.length === 0) return el("p", { class: "empty" }, "None.");
    return el(
      "table",
      { id },
      el("thead", {}, el("tr", {}, headings.map((heading) => el("th", {}, heading)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))),
    );
  }

  function fields(pairs, id) {
    return el(
      "table",
      { class: "fields", id },
      el("tbody", {}, pairs.map(([name, value, key]) => el("tr", { "data-field": key }, el("th", {}, name), el("td", {}, value)))),
    );
  }

  function message(text, kind) {
    return el("div", { class: `message ${kind || ""}`, id: "message" }, text);
  }

  // The part of a call's failure the reader needs.
  function describe(error) {
    if (error instanceof Unreachable) return `The node is unreachable (${rpc.url}); the page reconnects on its own.`;
    if (error instanceof RpcError) return `The node refused: ${error.message} (error ${error.code}).`;
    return String(error.message || error);
  }

  function show(...children) {
    $("view").replaceChildren(...children);
  }

  // The summary strip.
  function renderSummary() {
    const head = state.head;
    if (head) {
      $("head-height").textContent = head.height;
      $("head-height").href = `#/block/${head.height}`;
      $("head-age").textContent = `${short(head.hash)} · ${age(head.timestamp)}`;
    }
    const finalized = state.finalized;
    if (finalized) {
      $("final-height").textContent = finalized.height;
      $("final-height").href = `#/block/${finalized.height}`;
      $("final-lag").textContent = head ? `${Math.max(0, head.height - finalized.height)} behind the head` : "";
    } else if (state.engine === "pow") {
      $("final-height").textContent = "none";
      $("final-lag").textContent = "PoW has no finality";
    } else if (state.engine) {
      $("final-height").textContent = "none yet";
      $("final-lag").textContent = "";
    }
    const status = state.status;
    if (status) {
      $("chain").textContent = `${status.chainId} · ${status.engine}`;
      $("peers").textContent = status.peers;
      $("mempool").textContent = `${status.mempool.transactions} txs`;
      $("sync").textContent = status.halted
        ? `halted: ${status.halted}`
        : status.syncing && status.sync
          ? `${status.sync.head} / ${status.sync.target}`
          : status.syncing
            ? "syncing"
            : "in step";
    }
  }

  function setConnection({ open, retryMs }) {
    state.connected = open;
    const banner = $("connection");
    if (open) {
      banner.hidden = true;
      banner.textContent = "";
      refreshStatus().then(() => route());
    } else {
      banner.hidden = false;
      banner.className = "banner";
      banner.textContent = `The node is unreachable at ${rpc.url}; trying again in ${Math.ceil(retryMs / 1000)} s.`;
    }
  }

  async function refreshStatus() {
    try {
      const status = await rpc.call("node_status");
      state.status = status;
      state.engine = status.engine;
      if (!state.head || status.head.height >= state.head.height) state.head = status.head;
      if (status.finalized && (!state.finalized || status.finalized.height >= state.finalized.height)) {
        state.finalized = status.finalized;
      }
      renderSummary();
    } catch {
      // The banner tells of an unreachable node; a slow answer waits for the next round.
    }
  }

  // Home: the latest blocks, the validator set, the peers.
  async function home() {
    const mine = view;
    const latest = el("tbody", {});
    const blocks = card(
      "Latest blocks",
      "latest",
      el(
        "table",
        { id: "latest-blocks" },
        el("thead", {}, el("tr", {}, ["Height", "Hash", "Proposer", "Txs", "Time", ""].map((h) => el("th", {}, h)))),
        latest,
      ),
    );
    const validators = card("Validators", "validators", el("p", { class: "empty" }, "Loading…"));
    const peers = card("Peers", "peers-list", el("p", { class: "empty" }, "Loading…"));
    show(blocks, validators, peers);

    const row = (block) =>
      el(
        "tr",
        { "data-height": block.height },
        el("td", {}, blockLink(block.height)),
        el("td", {}, blockLink(block.hash, short(block.hash))),
        el("td", {}, accountLink(block.proposer)),
        el("td", {}, block.transactions.length),
        el("td", { title: time(block.timestamp) }, age(block.timestamp)),
        el("td", {}, isFinal(block.height) ? badge("final") : ""),
      );
    let shown = -1;
    const addNewBlocks = async () => {
      const top = state.head ? state.head.height : 0;
      const from = Math.max(shown + 1, top - LATEST_BLOCKS + 1, 0);
      for (let height = from; height <= top; height++) {
        const block = await rpc.call("chain_getBlock", [height]);
        if (!block || stale(mine)) return;
        const tr = row(block);
        if (shown >= 0) tr.classList.add("new");
        latest.prepend(tr);
        shown = height;
      }
      while (latest.children.length > LATEST_BLOCKS) latest.lastChild.remove();
      // Final badges move with the finalized height.
      for (const tr of latest.children) {
        const cell = tr.lastChild;
        if (isFinal(Number(tr.dataset.height)) && cell.childElementCount === 0) cell.append(badge("final"));
      }
    };
    mine.refresh = () => addNewBlocks().catch(() => {});
    try {
      await addNewBlocks();
      const set = await rpc.call("consensus_validators");
      if (stale(mine)) return;
      validators.replaceChildren(el("h2", {}, "Validators"), renderValidators(set));
      const connected = await rpc.call("node_peers");
      if (stale(mine)) return;
      peers.replaceChildren(el("h2", {}, "Peers"), renderPeers(connected));
    } catch (error) {
      if (!stale(mine)) show(blocks, message(describe(error), "error"));
    }
  }

  function renderValidators(set) {
    if (set.raft) {
      const raft = set.raft;
      const rows = raft.members.map((member) => [
        member.id,
        accountLink(member.address, true),
        member.id === raft.leader ? "leader" : member.role,
        member.id === raft.memberId ? "this node" : "",
      ]);
      return el(
        "div",
        {},
        el("p", {}, `Raft, term ${raft.term}; leader: ${raft.leader === null ? "none known (an election)" : `member ${raft.leader}`}.`),
        table(["Member", "Address", "Role", ""], rows, "members"),
      );
    }
    if (set.validators.length === 0) return el("p", { class: "empty" }, "Proof of work: anyone may mine, there is no validator set.");
    const weight = set.engine === "dpos" ? "Approval" : "Stake";
    const rows = set.validators.map((validator) => [
      accountLink(validator.address, true),
      amount(validator.stake),
      `${(validator.shareBps / 100).toFixed(2)} %`,
      validator.slashed ? badge("slashed") : "",
      validator.address === set.producer ? "producing now" : "",
    ]);
    const where = [set.epoch === null ? null : `epoch ${set.epoch}`, set.slot === null ? null : `slot ${set.slot}`].filter(Boolean);
    return el(
      "div",
      {},
      el("p", {}, `${set.engine.toUpperCase()}${where.length ? `, ${where.join(", ")}` : ""}.`),
      table(["Address", weight, "Share", "", ""], rows, "validator-set"),
      set.schedule.length ? el("h3", {}, "Next slots") : null,
      set.schedule.length
        ? table(["Slot", "Proposer"], set.schedule.map((slot) => [slot.slot, accountLink(slot.proposer, true)]), "schedule")
        : null,
    );
  }

  function renderPeers(peers) {
    const rows = peers.connected.map((peer) => [
      el("span", { class: "mono" }, short(peer.peerId)),
      // An address's own `/p2p/ID` ending repeats the first column.
      el("span", { class: "mono wrap" }, peer.addresses.map((address) => address.replace(`/p2p/${peer.peerId}`, "")).join(", ")),
      peer.inbound ? "in" : "out",
      peer.score,
      peer.agent || "",
      `${peer.connectedSecs} s`,
    ]);
    const banned = peers.banned.length ? el("p", {}, `${peers.banned.length} banned.`) : null;
    return el("div", {}, table(["Peer", "Addresses", "Direction", "Score", "Agent", "Connected"], rows, "peers-table"), banned);
  }

  function kindCells(kind) {
    if (typeof kind === "string") return [kind.replaceAll("_", " "), "", ""];
    const [name, body] = Object.entries(kind)[0];
    const to = body && body.to ? accountLink(body.to) : "";
    const value = body && body.amount !== undefined ? amount(body.amount) : body && body.stake !== undefined ? amount(body.stake) : "";
    return [name.replaceAll("_", " "), to, value];
  }

  async function blockView(id, mine = view) {
    const param = isHeight(id) ? Number(id) : id;
    const block = await rpc.call("chain_getBlock", [param]);
    if (stale(mine)) return;
    if (!block) {
      const head = state.head ? ` (the head is at ${state.head.height})` : "";
      show(message(typeof param === "number" ? `No block at height ${param}${head}.` : `No block with hash ${id} on this node.`));
      return;
    }
    const status = isFinal(block.height) ? badge("final") : badge("included");
    const pairs = [
      ["Height", block.height, "height"],
      ["Hash", el("span", { class: "hash" }, block.hash), "hash"],
      ["Status", status, "status"],
      ["Parent", block.height > 0 ? blockLink(block.parent, block.parent) : "none (genesis)", "parent"],
      ["Time", `${time(block.timestamp)} (${age(block.timestamp)})`, "time"],
      ["Proposer", accountLink(block.proposer, true), "proposer"],
      ["State root", el("span", { class: "hash" }, block.stateRoot), "state-root"],
      ["Transactions root", el("span", { class: "hash" }, block.txsRoot), "txs-root"],
    ];
    if (block.chainWork) pairs.push(["Chain work", el("span", { class: "hash" }, block.chainWork), "chain-work"]);
    const txs = block.transactions.map((tx) => [txLink(tx.hash), accountLink(tx.sender), ...kindCells(tx.kind), tx.nonce, amount(tx.fee)]);
    const votes = (block.votes || []).map((vote) => [
      accountLink(vote.voter),
      blockLink(vote.source.height),
      blockLink(vote.target.height),
      blockLink(vote.target.hash, short(vote.target.hash)),
    ]);
    show(
      card(`Block ${block.height}`, "block", fields(pairs, "block-fields")),
      card(
        `Transactions (${txs.length})`,
        "transactions",
        table(["Hash", "From", "Kind", "To", "Amount", "Nonce", "Fee"], txs, "block-transactions"),
      ),
      card(`Finality votes (${votes.length})`, "votes", table(["Voter", "Source", "Target", "Target hash"], votes, "block-votes")),
    );
    mine.refresh = isFinal(block.height) ? null : () => blockView(id, mine).catch(() => {});
  }

  async function txView(hash, mine = view) {
    const info = await rpc.call("tx_get", [hash]);
    if (stale(mine)) return;
    if (info.status === "unknown") {
      show(message(`No transaction with hash ${hash} is pending or in this node's chain.`));
      mine.refresh = () => txView(hash, mine).catch(() => {});
      return;
    }
    const pairs = [
      ["Hash", el("span", { class: "hash" }, hash), "hash"],
      ["Status", badge(info.status), "status"],
    ];
    if (info.status === "included" || info.status === "final") {
      pairs.push(["Block", el("span", {}, blockLink(info.height), " ", blockLink(info.block, short(info.block))), "block"]);
      pairs.push(["Position", info.index, "index"]);
      const block = await rpc.call("chain_getBlock", [info.block]);
      if (stale(mine)) return;
      const tx = block && block.transactions[info.index];
      if (tx) {
        const [kind, to, value] = kindCells(tx.kind);
        pairs.push(["From", accountLink(tx.sender, true), "from"], ["Kind", kind, "kind"]);
        if (to) pairs.push(["To", to, "to"]);
        if (value) pairs.push(["Amount", value, "amount"]);
        pairs.push(["Nonce", tx.nonce, "nonce"], ["Fee", amount(tx.fee), "fee"]);
      }
    } else {
      pairs.push(["Block", "waiting in the mempool", "block"]);
    }
    show(card("Transaction", "transaction", fields(pairs, "tx-fields")));
    mine.refresh = info.status === "final" ? null : () => txView(hash, mine).catch(() => {});
  }

  async function accountView(address, mine = view) {
    const account = await rpc.call("state_getAccount", [address]);
    if (stale(mine)) return;
    const unbonding = account.unbonding.map((entry) => [amount(entry.amount), blockLink(entry.releaseHeight)]);
    show(
      card(
        "Account",
        "account",
        fields(
          [
            ["Address", el("span", { class: "hash" }, account.address), "address"],
            ["Balance", el("span", { id: "account-balance" }, amount(account.balance)), "balance"],
            ["Nonce", `${account.nonce} (next ${account.nextNonce})`, "nonce"],
            ["Stake", amount(account.stake), "stake"],
            ["Votes for", account.votes.length ? el("span", {}, account.votes.map((voted) => [accountLink(voted), " "])) : "none", "votes"],
            ["As of block", blockLink(account.height), "height"],
          ],
          "account-fields",
        ),
      ),
      card("Unbonding", "unbonding", table(["Amount", "Released at"], unbonding, "account-unbonding")),
    );
    mine.refresh = () => accountView(address, mine).catch(() => {});
  }

  // The view the location's hash names: #/, #/block/ID, #/tx/HASH, #/account/ADDRESS.
  async function route() {
    const [, name, arg] = (location.hash || "#/").match(/^#\/(\w*)\/?(.*)$/) || [];
    const id = decodeURIComponent(arg || "");
    const mine = { name: name || "home", refresh: null };
    view = mine;
    if (!state.connected) {
      show(message(`The node is unreachable at ${rpc.url}; this page shows it once it answers.`, "error"));
      return;
    }
    try {
      if (!name) await home();
      else if (name === "block") await blockView(id);
      else if (name === "tx") await txView(id);
      else if (name === "account") await accountView(id);
      else show(message(`There is no page ${location.hash}.`));
    } catch (error) {
      if (!stale(mine)) show(message(describe(error), "error"));
    }
  }

  // Opens the view `hash` names, again if it is the one on screen (no hashchange then).
  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  // A height goes to its block; a hash to its block, else its transaction; an address to its
  // account.
  async function search(text) {
    const query = text.trim();
    if (isHeight(query)) {
      go(`#/block/${query}`);
    } else if (/^(0x)?[0-9a-fA-F]{64}$/.test(query)) {
      const hash = query.replace(/^0x/, "").toLowerCase();
      const mine = { name: "search", refresh: null };
      view = mine;
      try {
        const block = await rpc.call("chain_getBlock", [hash]);
        if (block) {
          go(`#/block/${hash}`);
          return;
        }
        const tx = await rpc.call("tx_get", [hash]);
        if (tx.status !== "unknown") {
          go(`#/tx/${hash}`);
          return;
        }
        if (!stale(mine)) show(message(`Nothing found: no block or transaction with hash ${hash} on this node.`));
      } catch (error) {
        if (!stale(mine)) show(message(describe(error), "error"));
      }
    } else if (/^chorus1[02-9ac-hj-np-z]+$/i.test(query)) {
      go(`#/account/${query.toLowerCase()}`);
    } else {
      view = { name: "search", refresh: null };
      show(message(`"${query}" is not a height, a 64-digit hex hash or a chorus1… address.`));
    }
  }

  async function start() {
    let config;
    try {
      config = await (await fetch("config.json", { cache: "no-store" })).json();
    } catch (error) {
      show(message(`The page could not read its configuration: ${error}`, "error"));
      return;
    }
    const host = config.rpcHost || location.hostname;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${host}:${config.rpcPort}`;
    $("rpc-url").textContent = url;
    rpc = new Rpc(url, setConnection);
    rpc.subscribe("chain_subscribeHeads", "chain_head", (head) => {
      if (state.head && head.height < state.head.height && head.hash === state.head.hash) return;
      state.head = head;
      renderSummary();
      if (view.refresh) view.refresh();
    });
    rpc.subscribe("chain_subscribeFinalized", "chain_finalized", (finalized) => {
      state.finalized = finalized;
      renderSummary();
    });
    setInterval(() => state.connected && refreshStatus(), STATUS_EVERY_MS);
    setInterval(renderSummary, 1000);
    window.addEventListener("hashchange", route);
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      search($("query").value);
    });
    route();
  }

  start();
})();
