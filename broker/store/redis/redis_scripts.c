#include "redis_scripts.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

/* The fence, at the start of every script: key is the fence key. */
#define SCRIPT_FENCE(key)                                   \
    "local rid = ARGV[1]\n"                                 \
    "local seed = redis.call('GET', " key ")\n"             \
    "if not seed or (rid ~= '' and seed ~= rid) then\n"     \
    "  return redis.error_reply('FENCED run_id changed')\n" \
    "end\n"

/* Integers as exact decimal text. Redis's Lua 5.1 turns numbers into
 * strings with "%.14g" when concatenated (1e14 would be "1e+14"), but
 * "%.0f" writes every integer a double holds exactly, offsets up to 2^53
 * included. Numbers given to redis.call directly are fine (Redis writes
 * them with "%.17g"), and so are those a script returns (integer
 * replies). */
#define SCRIPT_INT                        \
    "local function int(x)\n"             \
    "  return string.format('%.0f', x)\n" \
    "end\n"

/* A topic's state from its meta key: the raw HMGET, epoch, off (the
 * newest offset) and fresh (no state valid under this incarnation: epoch
 * is the one its first message will get). */
#define SCRIPT_STATE                                             \
    "local function state(mk)\n"                                 \
    "  local m = redis.call('HMGET', mk, 'e', 'o', 'r', 'c')\n"  \
    "  local epoch, off = m[1], tonumber(m[2])\n"                \
    "  local fresh = not epoch or (rid ~= '' and m[3] ~= rid)\n" \
    "  if fresh then\n"                                          \
    "    epoch = string.sub(redis.sha1hex(seed .. ':' .."        \
    " string.sub(mk, 9, -4)), 1, 32)\n"                          \
    "    off = 0\n"                                              \
    "  end\n"                                                    \
    "  return m, epoch, off, fresh\n"                            \
    "end\n"

/* Head of the one-topic scripts (KEYS meta, stream, fence). */
#define SCRIPT_HEAD         \
    SCRIPT_FENCE("KEYS[3]") \
    SCRIPT_STATE "local m, epoch, off, fresh = state(KEYS[1])\n"

/* One call per instance and batch, one stream entry per topic and call
 * whatever its message count: inside a script each redis.call costs
 * about as much as a whole pipelined XADD from a client, so an entry per
 * message, or a call per topic, would cost several times the bare XADD +
 * PUBLISH floor (docs/BENCHMARKS.md). An entry's id is its last offset,
 * so XRANGE from offset a + 1 starts at the entry holding a + 1. */
redis_script redis_script_publish = {
    "publish",
    SCRIPT_FENCE("KEYS[1]") SCRIPT_INT SCRIPT_STATE
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local now_s = int(now)\n"
    "local size, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local out = {now}\n"
    "for i = 1, (#KEYS - 1) / 2 do\n"
    "  local mk, sk, a = KEYS[2 * i], KEYS[2 * i + 1], 3 * i + 1\n"
    "  local n, body = tonumber(ARGV[a + 1]), ARGV[a + 2]\n"
    "  local m, epoch, off, fresh = state(mk)\n"
    /* past 2^53 a double no longer counts by one: refuse before writing */
    "  if n > 9007199254740992 - off then\n"
    "    return redis.error_reply('ERR topic ' .. string.sub(mk, 9, -4) .."
    " ' has reached the last offset (2^53)')\n"
    "  end\n"
    "  if fresh then\n"
    "    redis.call('DEL', sk)\n"
    "    redis.call('HSET', mk, 'e', epoch, 'o', 0, 'r', rid, 'c', 0)\n"
    "  end\n"
    "  local first = off + 1\n"
    "  off = off + n\n"
    /* count retention: drop the entries wholly older than the newest
     * size offsets, whole stream nodes at a time (cheap); reads hide the
     * rest (redis_script_read) */
    "  local id = int(off) .. '-0'\n"
    "  if size > 0 and off > size then\n"
    "    redis.call('XADD', sk, 'MINID', '~', int(off - size + 1) .. '-0',"
    " id, 't', now, 'n', n, 'd', body)\n"
    "  else\n"
    "    redis.call('XADD', sk, id, 't', now, 'n', n, 'd', body)\n"
    "  end\n"
    /* age retention at most once a second per topic; the stream itself
     * expires a second after its newest message would */
    "  if ttl > 0 and (fresh or now - tonumber(m[4] or '0') >= 1000) then\n"
    "    redis.call('HSET', mk, 'o', off, 'c', now)\n"
    "    redis.call('PEXPIRE', sk, ttl + 1000)\n"
    /* oldest first, a page at a time (usually one entry is read), at
     * most 1024 entries a check */
    "    local cut, start, seen, more = nil, '-', 0, true\n"
    "    while more and seen < 1024 do\n"
    "      local es = redis.call('XRANGE', sk, start, '+', 'COUNT', 16)\n"
    "      more = #es == 16\n"
    "      seen = seen + #es\n"
    "      for _, e in ipairs(es) do\n"
    "        if tonumber(e[2][2]) >= now - ttl then more = false break end\n"
    "        cut = tonumber(string.match(e[1], '^(%d+)')) + 1\n"
    "      end\n"
    "      if more then start = '(' .. es[16][1] end\n"
    "    end\n"
    "    if cut then redis.call('XTRIM', sk, 'MINID', int(cut) .. '-0') end\n"
    "  else\n"
    "    redis.call('HSET', mk, 'o', off)\n"
    "  end\n"
    "  redis.call('PUBLISH', ARGV[a], epoch .. ' ' .. int(first) .. ' ' .."
    " now_s .. ' ' .. ARGV[a + 1] .. '\\n' .. body)\n"
    "  out[2 * i], out[2 * i + 1] = epoch, first\n"
    "end\n"
    "return out\n",
    {0}};

/* The oldest offset readers may see: with a count limit, no older than
 * the newest size (the trim above keeps whole entries and stream nodes). */
#define SCRIPT_LOW                                     \
    "local size = tonumber(ARGV[2])\n"                 \
    "local function low(oldest)\n"                     \
    "  if size > 0 and off - size + 1 > oldest then\n" \
    "    return off - size + 1\n"                      \
    "  end\n"                                          \
    "  return oldest\n"                                \
    "end\n"

redis_script redis_script_meta = {
    "meta",
    SCRIPT_HEAD SCRIPT_LOW
    "if fresh then return {epoch, 0, 0} end\n"
    "local e = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "local oldest = 0\n"
    "if e[1] then\n"
    "  oldest = low(tonumber(string.match(e[1][1], '^(%d+)')) -"
    " tonumber(e[1][2][4]) + 1)\n"
    "end\n"
    "return {epoch, off, oldest}\n",
    {0}};

/* Entries until they hold limit offsets from the first one readable. */
redis_script redis_script_read = {
    "read",
    SCRIPT_HEAD SCRIPT_LOW SCRIPT_INT
    "if fresh then return {0, {}} end\n"
    "local from = low(tonumber(ARGV[3]) + 1)\n"
    /* nothing after the newest (an after of any size: no stream id) */
    "if from > off then return {off + 1, {}} end\n"
    "local limit = tonumber(ARGV[4])\n"
    "local out, got, start = {}, 0, int(from) .. '-0'\n"
    "while got < limit do\n"
    "  local es = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 16)\n"
    "  for _, e in ipairs(es) do\n"
    "    local last = tonumber(string.match(e[1], '^(%d+)'))\n"
    "    local first = last - tonumber(e[2][4]) + 1\n"
    "    if first < from then first = from end\n"
    "    got = got + last - first + 1\n"
    "    out[#out + 1] = e\n"
    "  end\n"
    "  if #es < 16 then break end\n"
    "  start = '(' .. es[#es][1]\n"
    "end\n"
    "return {from, out}\n",
    {0}};

static void sha1_hex(const char *text, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < n && i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

void redis_scripts_init(void)
{
    sha1_hex(redis_script_publish.body, redis_script_publish.sha);
    sha1_hex(redis_script_meta.body, redis_script_meta.sha);
    sha1_hex(redis_script_read.body, redis_script_read.sha);
}
