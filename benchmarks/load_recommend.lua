-- The wrk script of benchmarks/load.py: POST /v1/recommend over prepared JSON bodies (one a
-- line, in the file named by the first script argument), each thread cycling through them;
-- answers outside 2xx (with the first one kept as a sample) and 2xx answers with a
-- non-empty "degraded" list are counted per thread, and one line "LOAD_RESULT {json}" with
-- the counts and latency percentiles (microseconds) is printed at the end.

local threads = {}
local count = 0

function setup(thread)
  count = count + 1
  thread:set("id", count)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  if path == nil then
    error("name the file of request bodies: wrk ... -s load_recommend.lua URL -- FILE")
  end
  prepared = {}
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(path) do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", "/v1/recommend", headers, line)
    end
  end
  if #prepared == 0 then
    error("no request bodies in " .. path)
  end
  -- threads start at different places in the cycle
  position = ((id or 1) - 1) * 97 % #prepared
  non2xx = 0
  degraded = 0
  first_bad = ""
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  elseif body ~= nil and string.find(body, '"degraded":[', 1, true)
      and not string.find(body, '"degraded":[]', 1, true) then
    degraded = degraded + 1
  end
end

local function json_string(text)
  local escaped = string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

function done(summary, latency, requests)
  local bad, sample, partial = 0, "", 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    partial = partial + (thread:get("degraded") or 0)
    local first = thread:get("first_bad")
    if sample == "" and first ~= nil then
      sample = first
    end
  end
  local e = summary.errors
  local fields = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"bytes": %d', summary.bytes),
    string.format('"connect_errors": %d', e.connect),
    string.format('"read_errors": %d', e.read),
    string.format('"write_errors": %d', e.write),
    string.format('"timeouts": %d', e.timeout),
    string.format('"status_errors": %d', e.status),
    string.format('"non2xx": %d', bad),
    string.format('"degraded": %d', partial),
    string.format('"first_non2xx": %s', json_string(sample)),
    string.format('"mean_us": %.1f', latency.mean),
    string.format('"max_us": %d', latency.max),
  }
  for _, p in ipairs({50, 90, 95, 99, 99.9}) do
    fields[#fields + 1] = string.format('"p%s_us": %d', tostring(p), latency:percentile(p))
  end
  io.write("LOAD_RESULT {" .. table.concat(fields, ", ") .. "}\n")
end
