#include "redis_scripts.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

/* Shared head of every script: the fence and the topic's state. Leaves
 * epoch, off (the newest offset) and fresh (no state valid under this
 * incarnation: epoch is the one its first message will get). */
#define SCRIPT_HEAD                                                \
    "local rid = ARGV[1]\n"                                        \
    "local seed = redis.call('GET', KEYS[3])\n"                    \
    "if not seed or (rid ~= '' and seed ~= rid) then\n"            \
    "  return redis.error_reply('FENCED run_id changed')\n"        \
    "end\n"                                                        \
    "local m = redis.call('HMGET', KEYS[1], 'e', 'o', 'r', 'c')\n" \
    "local epoch, off = m[1], tonumber(m[2])\n"                    \
    "local fresh = not epoch or (rid ~= '' and m[3] ~= rid)\n"     \
    "if fresh then\n"                                              \
    "  epoch = string.sub(redis.sha1hex(seed .. ':' .."            \
    " string.sub(KEYS[1], 9, -4)), 1, 32)\n"                       \
    "  off = 0\n"                                                  \
    "end\n"

redis_script redis_script_publish = {
    "publish",
    SCRIPT_HEAD
    "if fresh then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', rid, 'c', 0)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local size, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local first = off + 1\n"
    "local out = {}\n"
    "for i = 5, #ARGV do\n"
    "  off = off + 1\n"
    "  local d = ARGV[i]\n"
    "  if size > 0 then\n"
    /* exact below 1000 (a few entries to drop), else the cheap, whole
     * stream node trim */
    "    if size < 1000 then\n"
    "      redis.call('XADD', KEYS[2], 'MAXLEN', size, off .. '-0', 't', now,"
    " 'd', d)\n"
    "    else\n"
    "      redis.call('XADD', KEYS[2], 'MAXLEN', '~', size, off .. '-0',"
    " 't', now, 'd', d)\n"
    "    end\n"
    "  else\n"
    "    redis.call('XADD', KEYS[2], off .. '-0', 't', now, 'd', d)\n"
    "  end\n"
    "  out[#out + 1] = #d .. ':' .. d\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'o', off)\n"
    /* age retention at most once a second per topic; the stream itself
     * expires a second after its newest message would */
    "if ttl > 0 and (fresh or now - tonumber(m[4] or '0') >= 1000) then\n"
    "    redis.call('HSET', KEYS[1], 'c', now)\n"
    "    redis.call('PEXPIRE', KEYS[2], ttl + 1000)\n"
    "    local cut = nil\n"
    "    for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT',"
    " 1000)) do\n"
    "      if tonumber(e[2][2]) >= now - ttl then break end\n"
    "      cut = tonumber(string.match(e[1], '^(%d+)')) + 1\n"
    "    end\n"
    "    if cut then redis.call('XTRIM', KEYS[2], 'MINID', cut .. '-0') end\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[4], epoch .. ' ' .. first .. ' ' .. now .."
    " ' ' .. (off - first + 1) .. '\\n' .. table.concat(out))\n"
    "return {epoch, first, now}\n",
    {0}};

redis_script redis_script_meta = {
    "meta",
    SCRIPT_HEAD
    "if fresh then return {epoch, 0, 0} end\n"
    "local e = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "local oldest = 0\n"
    "if e[1] then oldest = tonumber(string.match(e[1][1], '^(%d+)')) end\n"
    "return {epoch, off, oldest}\n",
    {0}};

redis_script redis_script_read = {
    "read",
    SCRIPT_HEAD
    "if fresh then return {} end\n"
    "return redis.call('XRANGE', KEYS[2], tonumber(ARGV[2]) + 1 .. '-0',"
    " '+', 'COUNT', ARGV[3])\n",
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
