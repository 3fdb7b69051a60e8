-- TLS (wss://, https://): a throwaway PKI made with the openssl CLI at test
-- time (nothing secret is committed), chains, PKCS#12, mutual TLS, bad
-- clients and bad configuration.
local testing = require "moonws.testing"
local client = require "moonws.client"
local cjson = require "cjson"

local bin = os.getenv("MOONWS_BIN") or "build/moonws"

local function sh(cmd)
  local ok = os.execute("(" .. cmd .. ") >/dev/null 2>&1")
  assert(ok, "failed: " .. cmd)
end

-- root CA -> intermediate CA -> server leaf (a Let's Encrypt-style chain),
-- a client certificate from the root, and an unrelated CA.
local function make_pki(dir)
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(("cd %s && openssl req -x509 %s -keyout root.key -out root.pem -days 2 -subj '/CN=moonws test root'"):format(dir, key))
  sh(("cd %s && openssl req %s -keyout int.key -out int.csr -subj '/CN=moonws test intermediate'"):format(dir, key))
  sh(("cd %s && printf 'basicConstraints=critical,CA:true\\nkeyUsage=critical,keyCertSign,cRLSign\\n' > int.ext && " ..
      "openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -out int.pem -days 2 -extfile int.ext"):format(dir))
  sh(("cd %s && openssl req %s -keyout server.key -out server.csr -subj '/CN=localhost'"):format(dir, key))
  sh(("cd %s && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext && " ..
      "openssl x509 -req -in server.csr -CA int.pem -CAkey int.key -CAcreateserial -out leaf.pem -days 2 -extfile server.ext && " ..
      "cat leaf.pem int.pem > chain.pem"):format(dir))
  sh(("cd %s && openssl req %s -keyout alice.key -out alice.csr -subj '/CN=alice' && " ..
      "openssl x509 -req -in alice.csr -CA root.pem -CAkey root.key -CAcreateserial -out alice.pem -days 2"):format(dir, key))
  sh(("cd %s && openssl req -x509 %s -keyout other.key -out other.pem -days 2 -subj '/CN=some other CA'"):format(dir, key))
  sh(("cd %s && openssl pkcs12 -export -in leaf.pem -inkey server.key -certfile int.pem -out server.p12 -passout pass:s3cret"):format(dir))
  sh(("cd %s && openssl pkey -in server.key -aes256 -passout pass:pw -out server-enc.key"):format(dir))
  sh(("cd %s && printf 'pw\\n' > pwfile"):format(dir))
end

-- Runs moonws with args and returns its exit code and stderr.
local function run(args)
  local err = os.tmpname()
  local _, _, code = os.execute(("%s %s --check examples >/dev/null 2>%s"):format(bin, args, err))
  local f = io.open(err)
  local text = f:read("a")
  f:close()
  os.remove(err)
  return code, text
end

describe("TLS", function()
  local dir, srv, mtls
  lazy_setup(function()
    dir = os.tmpname()
    os.remove(dir)
    sh("mkdir -p " .. dir)
    make_pki(dir)
    srv = testing.start{ dir = "spec/services/rt", static = "examples/public",
                         tls = { cert = dir .. "/chain.pem", key = dir .. "/server.key" } }
    mtls = testing.start{ dir = "spec/services/rt",
                          tls = { cert = dir .. "/chain.pem", key = dir .. "/server.key",
                                  client_ca = dir .. "/root.pem" } }
  end)
  lazy_teardown(function()
    if srv then assert.equal(0, srv:stop()); srv:cleanup() end
    if mtls then assert.equal(0, mtls:stop()); mtls:cleanup() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  local function ca() return { ca = dir .. "/root.pem" } end

  it("prints a wss:// listening line", function()
    assert.matches("^wss://127%.0%.0%.1:%d+$", srv.wss_url)
  end)

  it("echoes over wss:// with the chain verified, and caller.secure", function()
    local c = assert(client.connect(srv.wss_url .. "/probe", { tls = ca() }))
    c:send("echo:over tls")
    assert.equal("over tls", (c:receive(2)))
    c:send("info")
    local info = cjson.decode((c:receive(2)))
    assert.is_true(info.secure)
    c:sendBinary(string.rep("z", 200000))
    assert.equal(200000, #c:receive(5))
    assert.equal(1000, c:close())
  end)

  it("echoes a message larger than the socket buffers (partial TLS writes)", function()
    -- examples/echo.lua takes 64 MiB messages. The first echo comes back
    -- while the client is still busy sending the second message and reads
    -- nothing, so SSL_write meets a full socket and is retried from the queue.
    local big_srv = testing.start{ dir = "examples",
                                   tls = { cert = dir .. "/chain.pem", key = dir .. "/server.key" } }
    local c = assert(client.connect(big_srv.wss_url .. "/echo", { tls = ca(), timeout = 10 }))
    local big = {}
    for i = 1, 16 * 1024 do big[i] = string.rep(string.char(65 + i % 26), 1023) .. "\n" end
    big = table.concat(big)
    assert(c:sendBinary(big, 30))
    assert(c:sendBinary(big:reverse(), 30))
    local got = c:receive(30)
    assert.equal(#big, #got)
    assert.is_true(got == big)
    got = c:receive(30)
    assert.is_true(got == big:reverse())
    c:send("after")
    assert.equal("after", (c:receive(5)))
    assert.equal(1000, c:close())
    assert.equal(0, big_srv:stop())
    big_srv:cleanup()
  end)

  it("verifies the host name, by SNI name and by IP", function()
    -- by IP (the URL's host), then by DNS name (SNI, without needing a resolver)
    local c = assert(client.connect(srv.wss_url .. "/probe", { tls = ca() }))
    c:close()
    c = assert(client.connect(srv.wss_url .. "/probe",
      { tls = { ca = dir .. "/root.pem", servername = "localhost" } }))
    c:close()
    local bad, err = client.connect(srv.wss_url .. "/probe",
      { tls = { ca = dir .. "/root.pem", servername = "other.example" } })
    assert.is_nil(bad)
    assert.matches("certificate verify failed", err)
  end)

  it("fails verification with a CA that did not sign the server", function()
    local c, err = client.connect(srv.wss_url .. "/probe", { tls = { ca = dir .. "/other.pem" } })
    assert.is_nil(c)
    assert.matches("certificate verify failed", err)
    c = assert(client.connect(srv.wss_url .. "/probe", { tls = { verify = false } }))
    c:close()
  end)

  it("serves HTTP endpoints and static files over https://", function()
    local status, body = client.http("GET", srv.https_url .. "/probe/echo-request?x=1", nil, nil, 5, ca())
    assert.equal(200, status)
    assert.same({ x = "1" }, cjson.decode(body).query)
    status, body = client.http("GET", srv.https_url .. "/index.html", nil, nil, 5, ca())
    assert.equal(200, status)
    assert.matches("<html", body, 1, true)
    status = client.http("POST", srv.https_url .. "/probe/broadcast", "x", nil, 5, ca())
    assert.equal(200, status)
  end)

  -- A TLS server of static files under dir/SUB: big.bin of BIG random bytes
  -- and small.txt.
  local function file_server(sub, big)
    sh(("mkdir -p %s/%s && head -c %d /dev/urandom > %s/%s/big.bin && " ..
        "echo small > %s/%s/small.txt"):format(dir, sub, big, dir, sub, dir, sub))
    return testing.start{ dir = "spec/services/rt", static = dir .. "/" .. sub,
                          tls = { cert = dir .. "/chain.pem", key = dir .. "/server.key" } }
  end

  -- Reads until the server closes: n answers of 200, small.txt's last.
  local function assert_answers(s, n)
    local data, why = s:receiveAll(10)
    s:close()
    assert.equal("closed", why)
    local _, answers = data:gsub("HTTP/1%.1 200 OK\r\n", "")
    assert.equal(n, answers)
    assert.equal("small\n", data:sub(-6))
  end

  it("answers requests pipelined behind a large file over https://", function()
    -- TLS hands over whole records: the requests behind the file wait in
    -- TLS's buffer and in ours while it streams.
    local files = file_server("static", 300000)
    local s = assert(client.tcp("127.0.0.1", files.tls_port, 5, ca()))
    local reqs = { "GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n" }
    for _ = 1, 400 do reqs[#reqs + 1] = "GET /small.txt HTTP/1.1\r\nHost: a\r\n\r\n" end
    reqs[#reqs + 1] = "GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert(s:send(table.concat(reqs)))
    assert_answers(s, 402)
    assert.equal(0, files:stop())
    files:cleanup()
  end)

  it("answers a request that TLS read ahead while a large file streamed", function()
    -- Two TLS records: the file's request, then the next one. One read(2)
    -- takes both; the first is answered (reading pauses while the file
    -- streams) and the second waits whole inside TLS, where no readiness
    -- event will tell of it: the resume must look there.
    local files = file_server("ahead", 3000000)
    for _ = 1, 5 do
      local s = assert(client.tcp("127.0.0.1", files.tls_port, 5, ca()))
      assert(s:send("GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n"))
      assert(s:send("GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
      assert_answers(s, 2)
    end
    assert.equal(0, files:stop())
    files:cleanup()
  end)

  it("tells scripts about the session in caller.tls, and nothing over plain ws://", function()
    local c = assert(client.connect(srv.wss_url .. "/probe", { tls = ca() }))
    c:send("info")
    local tls = cjson.decode((c:receive(2))).tls
    assert.matches("^TLSv1%.[23]$", tls.version)
    assert.is_string(tls.cipher)
    assert.equal("http/1.1", tls.alpn)
    assert.is_nil(tls.subject)
    c:close()
    c = assert(srv:connect("/probe"))
    c:send("info")
    assert.equal(cjson.null, cjson.decode((c:receive(2))).tls)
    c:close()
  end)

  it("resumes sessions (the openssl CLI saves one and offers it again)", function()
    local sess = dir .. "/session.pem"
    local function get(extra)
      local cmd = ("printf 'GET /probe/tls HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n' | " ..
        "timeout 5 openssl s_client -connect 127.0.0.1:%d -CAfile %s/root.pem -ign_eof -quiet %s 2>/dev/null")
        :format(srv.tls_port, dir, extra)
      local f = assert(io.popen(cmd))
      local out = f:read("a")
      f:close()
      return cjson.decode(out:match("\r\n\r\n(.*)$"))
    end
    assert.is_false(get("-sess_out " .. sess).resumed)
    assert.is_true(get("-sess_in " .. sess).resumed)
  end)

  describe("mutual TLS", function()
    it("accepts a client certificate from the CA and shows its subject", function()
      local c = assert(client.connect(mtls.wss_url .. "/probe",
        { tls = { ca = dir .. "/root.pem", cert = dir .. "/alice.pem", key = dir .. "/alice.key" } }))
      c:send("info")
      assert.is_true(cjson.decode((c:receive(2))).secure)
      c:close()
      local status, body = client.http("GET", mtls.https_url .. "/probe/tls", nil, nil, 5,
        { ca = dir .. "/root.pem", cert = dir .. "/alice.pem", key = dir .. "/alice.key" })
      assert.equal(200, status)
      local tls = cjson.decode(body)
      assert.matches("CN=alice", tls.subject)
      assert.matches("CN=moonws test root", tls.issuer)
      assert.matches("^TLSv1%.[23]$", tls.version)
      assert.equal("http/1.1", tls.alpn)
    end)

    it("refuses a client without a certificate, with an alert that says so", function()
      -- TLS 1.3 refuses after the client's side of the handshake is done:
      -- the alert is what answers the upgrade request
      local c, err = client.connect(mtls.wss_url .. "/probe", { tls = ca() })
      assert.is_nil(c)
      assert.matches("alert certificate required", err, 1, true)
      local status, herr = client.http("GET", mtls.https_url .. "/probe/tls", nil, nil, 5, ca())
      assert.is_nil(status)
      assert.matches("alert certificate required", herr, 1, true)
    end)

    it("refuses a certificate from another CA", function()
      local c, err = client.connect(mtls.wss_url .. "/probe",
        { tls = { ca = dir .. "/root.pem", cert = dir .. "/other.pem", key = dir .. "/other.key" } })
      assert.is_nil(c)
      assert.matches("alert unknown ca", err, 1, true)
    end)
  end)

  describe("bad clients cost one connection", function()
    it("answers plain HTTP sent to the TLS port with a 400 that says why, and closes", function()
      local s = assert(client.tcp("127.0.0.1", srv.tls_port))
      s:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      local data, why = s:receiveAll(3)
      assert.equal("closed", why)
      assert.matches("^HTTP/1%.1 400 ", data)
      assert.matches("This port speaks TLS: use https:// or wss://\n$", data)
      s:close()
    end)

    it("closes garbage and a client that drops mid-handshake", function()
      local s = assert(client.tcp("127.0.0.1", srv.tls_port))
      s:send(string.rep("\22\3\1\0\255garbage", 100))
      local _, why = s:receiveAll(3)
      assert.equal("closed", why)
      s:close()
      s = assert(client.tcp("127.0.0.1", srv.tls_port))
      s:send("\22\3\1\2\0\1\0\1\252\3\3")   -- the start of a ClientHello
      s:close()
      local c = assert(client.connect(srv.wss_url .. "/probe", { tls = ca() }))
      c:send("echo:fine")
      assert.equal("fine", (c:receive(2)))
      c:close()
    end)

    it("drops a handshake that stalls, after the handshake timeout", function()
      local core = require "moonws.core"
      -- the server cannot have accepted before the client began to connect;
      -- both read the monotonic clock, so no wall-clock step moves this
      local t0 = core.now()
      local s = assert(client.tcp("127.0.0.1", srv.tls_port))
      local _, why = s:receiveAll(14)
      local took = core.now() - t0
      assert.equal("closed", why)
      assert.is_true(took >= 10 - 1e-6,
                     ("closed after %.3f s, before the 10 s handshake timeout"):format(took))
      s:close()
    end)

    it("leaves no file descriptor behind", function()
      local core = require "moonws.core"
      local function fds()
        local p = io.popen("ls /proc/" .. srv.pid .. "/fd | wc -l")
        local n = tonumber(p:read("a"))
        p:close()
        return n
      end
      local before = fds()
      for _ = 1, 20 do
        local s = assert(client.tcp("127.0.0.1", srv.tls_port))
        s:send("GET / HTTP/1.1\r\n\r\n")
        s:receiveAll(3)
        s:close()
        s = assert(client.tcp("127.0.0.1", srv.tls_port))
        s:send("\22\3\1\2\0\1\0\1\252\3\3")   -- the start of a ClientHello
        s:close()
        assert.is_nil(client.connect(mtls.wss_url .. "/probe", { tls = ca() }))
      end
      -- the server closes each of them as it notices: wait until it has
      local deadline = core.now() + 5
      while fds() > before and core.now() < deadline do core.sleep(0.05) end
      assert.equal(before, fds())
    end)
  end)

  describe("configuration", function()
    it("loads a PKCS#12 store with its password", function()
      local p12 = testing.start{ dir = "examples", tls = { cert = dir .. "/server.p12", password = "s3cret" } }
      local c = assert(client.connect(p12.wss_url .. "/echo", { tls = ca() }))
      c:send("p12")
      assert.equal("p12", (c:receive(2)))
      c:close()
      assert.equal(0, p12:stop())
      p12:cleanup()
    end)

    it("loads an encrypted PEM key with --key-password-file", function()
      local code = run(("--tls-listen 127.0.0.1:0 --cert %s/chain.pem --key %s/server-enc.key --key-password-file %s/pwfile")
        :format(dir, dir, dir))
      assert.equal(0, code)
    end)

    it("refuses bad configuration at start with exit 2 and a clear message", function()
      local code, err = run("--tls-listen 127.0.0.1:0 --cert /no/such.pem --key /no/such.key")
      assert.equal(2, code)
      assert.matches("cannot open the certificate /no/such.pem: No such file or directory", err, 1, true)
      code, err = run(("--tls-listen 127.0.0.1:0 --cert %s/chain.pem --key /no/such.key"):format(dir))
      assert.equal(2, code)
      assert.matches("cannot open the key /no/such.key: No such file or directory", err, 1, true)
      code, err = run(("--tls-listen 127.0.0.1:0 --cert %s/chain.pem --key %s/server.key --client-ca /no/ca.pem")
        :format(dir, dir))
      assert.equal(2, code)
      assert.matches("cannot open the client CA file /no/ca.pem", err, 1, true)
      -- a store is known by its contents, whatever its name; it holds the key
      sh(("cp %s/server.p12 %s/store.bin"):format(dir, dir))
      code = run(("--tls-listen 127.0.0.1:0 --cert %s/store.bin --key-password s3cret"):format(dir))
      assert.equal(0, code)
      code, err = run(("--tls-listen 127.0.0.1:0 --cert %s/store.bin --key %s/server.key --key-password s3cret")
        :format(dir, dir))
      assert.equal(2, code)
      assert.matches("is a PKCS#12 store, which holds the key", err, 1, true)
      code, err = run(("--tls-listen 127.0.0.1:0 --cert %s/chain.pem --key %s/alice.key"):format(dir, dir))
      assert.equal(2, code)
      assert.matches("does not match the certificate", err, 1, true)
      code, err = run(("--tls-listen 127.0.0.1:0 --cert %s/server.p12 --key-password wrong"):format(dir))
      assert.equal(2, code)
      assert.matches("wrong password", err, 1, true)
      code, err = run(("--tls-listen 127.0.0.1:0 --cert %s/chain.pem --key %s/server-enc.key --key-password nope"):format(dir, dir))
      assert.equal(2, code)
      assert.matches("cannot load the key", err, 1, true)
      code, err = run("--tls-listen 127.0.0.1:0")
      assert.equal(2, code)
      assert.matches("needs --cert", err, 1, true)
      code, err = run(("--cert %s/chain.pem"):format(dir))
      assert.equal(2, code)
      assert.matches("need a --tls-listen", err, 1, true)
    end)
  end)
end)
