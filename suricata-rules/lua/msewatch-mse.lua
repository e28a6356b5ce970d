-- msewatch: first-payload test for an MSE/PE step 1 (Ya + PadA).
--
-- Matches when the packet payload is 96-608 bytes, looks like nothing (average set bits per
-- byte in [3.4, 4.6], the fully-encrypted-traffic test of Wu et al., USENIX Security 2023),
-- has no printable prefix (first 6 bytes not all printable ASCII, at most half the bytes
-- printable, no run of 20 printable bytes) and cannot be a BitTorrent or TLS/SSH/HTTP opener.
-- It adds what the size-only rule lacks: unknown *plaintext* protocols stop matching.
-- Suricata 7 needs security.lua.allow-rules: true for any rule using this script.

local POP = {}
for b = 0, 255 do
    local n, v = 0, b
    while v > 0 do
        n = n + (v % 2)
        v = math.floor(v / 2)
    end
    POP[b] = n
end

local function printable(b)
    return b >= 0x20 and b <= 0x7e
end

function init(args)
    local needs = {}
    needs["payload"] = tostring(true)
    return needs
end

function match(args)
    local p = args["payload"]
    if p == nil then
        return 0
    end
    local n = #p
    if n < 96 or n > 608 then
        return 0
    end
    local bits, nprint, run, maxrun = 0, 0, 0, 0
    for i = 1, n do
        local b = string.byte(p, i)
        bits = bits + POP[b]
        if printable(b) then
            nprint = nprint + 1
            run = run + 1
            if run > maxrun then
                maxrun = run
            end
        else
            run = 0
        end
    end
    local avg = bits / n
    if avg < 3.4 or avg > 4.6 then
        return 0
    end
    local prefix = true
    for i = 1, 6 do
        if not printable(string.byte(p, i)) then
            prefix = false
            break
        end
    end
    if prefix or nprint * 2 > n or maxrun >= 20 then
        return 0
    end
    return 1
end
