-- Holds its worker without using CPU (so the CPU budget lets it), for the
-- spec that fills a worker's inbox meanwhile: sandbox = false for
-- os.execute.
local hold = { sandbox = false, dispatch = "op" }

function hold.onOpen(caller)
  caller:send({ op = "hello", worker = moonws.worker, workers = moonws.workers, id = caller.id })
end

-- {"op": "hold", "seconds": 2}
function hold.onHold(caller, m)
  moonws.log.info("holding worker " .. moonws.worker)
  os.execute("sleep " .. tonumber(m.seconds))
  return { op = "held" }
end

return hold
