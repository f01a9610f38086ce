-- wrk script: POSTs pre-signed transactions to /v1/txs, each body once.
-- Bodies come from the file in the TXS environment variable (written by
-- `cargo run --release -p node --example bench_txs`). Thread t of T sends
-- bodies t, t+T, t+2T, ...; once its share is used up it sends cheap GETs
-- of /health, which are not counted. At the end it prints how many
-- POSTs got 202 and how many got each other status.
local bodies = dofile(os.getenv("TXS"))
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  nthreads = next_id
  if nthreads == 0 then nthreads = tonumber(os.getenv("THREADS") or "1") end
  sent = 0
  accepted = 0
  rejected = 0
  posts = 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  -- wrk calls request() once on thread 0 before the run, only to check
  -- that the request parses; that one must not use up a body.
  if id == 0 and not verified then
    verified = true
    return wrk.format("GET", "/health")
  end
  local index = id + sent * tonumber(os.getenv("THREADS") or "1") + 1
  sent = sent + 1
  if index <= #bodies then
    posts = posts + 1
    return wrk.format("POST", "/v1/txs", headers, bodies[index])
  end
  return wrk.format("GET", "/health")
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  elseif status ~= 200 then
    rejected = rejected + 1
  end
end

function done(summary, latency, requests)
  local total_accepted, total_rejected = 0, 0
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + thread:get("accepted")
    total_rejected = total_rejected + thread:get("rejected")
  end
  -- No rate here: the run goes on with /health filler after the bodies
  -- are used up; run.sh takes the rate from the node's own counter.
  io.write(string.format("POST /v1/txs: %d accepted (202), %d refused\n", total_accepted, total_rejected))
end
