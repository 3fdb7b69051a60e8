-- A probe for spec/cluster_spec.lua: every connection says which worker
-- and id it has, and asks, by JSON events, for what crosses nodes.
local node = { dispatch = "op" }

function node.onOpen(caller)
  caller:send({ op = "hello", worker = moonws.worker, id = caller.id })
end

-- {"op": "subscribe", "topic": "t"}
function node.onSubscribe(caller, m)
  caller:subscribe(m.topic)
  return { op = "subscribed", topic = m.topic }
end

function node.onUnsubscribe(caller, m)
  caller:unsubscribe(m.topic)
  return { op = "unsubscribed", topic = m.topic }
end

-- {"op": "publish", "topic": "t", "text": "x"} (binary = true: publishBinary)
function node.onPublish(caller, m)
  if m.binary then
    moonws.publishBinary(m.topic, m.text)
  else
    moonws.publish(m.topic, m.text)
  end
  return { op = "published" }
end

-- {"op": "broadcast", "path": "/node", "text": "x"}
function node.onBroadcast(caller, m)
  moonws.broadcast(m.path, m.text)
  return { op = "broadcasted" }
end

-- {"op": "send", "id": 123, "text": "..."}: the result comes back
function node.onSend(caller, m)
  local ok, err = moonws.send(m.id, m.text)
  return { op = "sent", ok = ok == true, err = err }
end

-- {"op": "count", "path": "/node"}: both counts
function node.onCount(caller, m)
  local n, err = moonws.cluster_count(m.path)
  return { op = "count", here = moonws.count(m.path), cluster = n or false, err = err }
end

-- POST /node/broadcast: the body to every client of /node, on every node
node.http = {
  ["POST /broadcast"] = function(req)
    moonws.broadcast("/node", req.body)
    return 200, "OK"
  end,
}

return node
