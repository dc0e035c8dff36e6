-- wrk script for bench/run.py: POST signed WeChat text messages (a new MsgId each) or /api/ask questions.
-- wrk -t2 -c32 -d10s --latency -s bench/wrk.lua URL -- wechat|api QUESTIONS_FILE FIRST_MSG_ID
-- (FIRST_MSG_ID differs per run: a MsgId seen before would get the stored reply, a shortcut)
local threads = {}
local kind, questions, counter, first_id = "api", {}, 0, 0  -- thread_id: set by setup()

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  kind = args[1] or "api"
  first_id = tonumber(args[3] or "0")
  for line in io.lines(args[2]) do
    if #line > 0 then table.insert(questions, line) end
  end
end

function request()
  counter = counter + 1
  local q = questions[(counter % #questions) + 1]
  local body
  if kind == "wechat" then
    local msg_id = first_id + thread_id * 10000000 + counter
    body = string.format("<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>" ..
      "<FromUserName><![CDATA[o_bench_%d_%d]]></FromUserName><CreateTime>%d</CreateTime>" ..
      "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId></xml>",
      thread_id, counter % 500, os.time(), q, msg_id)
    return wrk.format("POST", nil, {["Content-Type"] = "text/xml"}, body)
  end
  body = '{"q": "' .. q .. '"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
