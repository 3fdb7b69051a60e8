-- A probe for spec/workers_spec.lua: every connection says which worker it
-- landed on, and asks, by JSON events, for what crosses workers.
local probe = { dispatch = "op" }

local hits = moonws.dict("hits")

function probe.onOpen(caller)
  caller:send({ op = "hello", worker = moonws.worker, workers = moonws.workers, id = caller.id })
end

-- {"op": "subscribe", "topic": "t"}
function probe.onSubscribe(caller, m)
  caller:subscribe(m.topic)
  return { op = "subscribed", topic = m.topic }
end

-- {"op": "publish", "topic": "t", "from": "a", "n": 50}: n messages, numbered
function probe.onPublish(caller, m)
  for i = 1, m.n do
    moonws.publish(m.topic, { op = "msg", from = m.from, i = i })
  end
  return { op = "published" }
end

-- {"op": "broadcast", "path": "/probe", "from": "a", "n": 50}
function probe.onBroadcast(caller, m)
  for i = 1, m.n do
    moonws.broadcast(m.path, { op = "msg", from = m.from, i = i })
  end
  return { op = "broadcasted" }
end

-- {"op": "send", "id": 123, "text": "..."}: the result comes back (with
-- "size": n instead of text, n bytes of "y")
function probe.onSend(caller, m)
  local text = m.size and string.rep("y", m.size) or m.text
  local ok, err = moonws.send(m.id, { op = "direct", text = text, from = caller.id })
  return { op = "sent", ok = ok == true, err = err }
end

function probe.onCount(caller, m)
  return { op = "count", n = moonws.count(m.path) }
end

-- {"op": "incr", "n": 50}: n atomic increments of the process's counter
function probe.onIncr(caller, m)
  for _ = 1, m.n do hits:incr("n", 1, 0) end
  return { op = "incremented", total = hits:get("n") }
end

function probe.onTotal(caller)
  return { op = "total", n = hits:get("n") }
end

-- {"op": "spin", "seconds": 0.8}: holds this worker (within the CPU budget)
function probe.onSpin(caller, m)
  moonws.log.info("spinning on worker " .. moonws.worker)
  local t0 = os.clock()
  while os.clock() - t0 < m.seconds do end
  return { op = "spun" }
end

-- {"op": "flood", "topic": "t", "n": 24, "size": 1048576}: big publishes
function probe.onFlood(caller, m)
  local big = string.rep("x", m.size)
  for _ = 1, m.n do moonws.publish(m.topic, big) end
  return { op = "flooded" }
end

return probe
