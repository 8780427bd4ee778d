//! The Lua scripts that make the Redis store's multi-key changes atomic, each compiled by Redis on
//! first use (a script Redis cannot compile fails every call that needs it).

/// Rotates a refresh token: `KEYS[1]` the presented token, `KEYS[2]` its successor; ARGV: client id,
/// now, the successor's expiry, the key prefix. Returns {"rotated", fields...}, {"reused", family}
/// or {"invalid"}. A token stored before resources (or DPoP keys) were kept has no `resource` (or
/// `jkt`) field: it reads as empty (a nil would end the reply early and fail HSET).
pub const ROTATE: &str = r#"
local t = redis.call('HGETALL', KEYS[1])
if #t == 0 then return {'invalid'} end
local r = {}
for i = 1, #t, 2 do r[t[i]] = t[i + 1] end
if r.client_id ~= ARGV[1] then return {'invalid'} end
local fam = ARGV[4] .. 'fam:' .. r.family
if redis.call('HGET', fam, 'revoked') == '1' then return {'invalid'} end
if r.rotated == '1' then
  redis.call('HSET', fam, 'revoked', '1')
  redis.call('EXPIREAT', fam, tonumber(r.family_expires_at) + 60)
  return {'reused', r.family}
end
if tonumber(r.expires_at) < tonumber(ARGV[2]) then return {'invalid'} end
local resource = r.resource or ''
local jkt = r.jkt or ''
redis.call('HSET', KEYS[1], 'rotated', '1')
redis.call('HSET', KEYS[2], 'family', r.family, 'client_id', r.client_id, 'subject', r.subject,
  'scopes', r.scopes, 'resource', resource, 'jkt', jkt, 'expires_at', ARGV[3],
  'family_expires_at', r.family_expires_at, 'rotated', '0')
redis.call('EXPIREAT', KEYS[2], tonumber(r.family_expires_at) + 60)
return {'rotated', r.family, r.client_id, r.subject, r.scopes, r.expires_at, r.family_expires_at,
  resource, jkt}
"#;

/// Uses a code once: `KEYS[1]` the code; `ARGV[1]` now. Returns {"fresh", fields...},
/// {"reused", jti, exp, family} or {"invalid"}. A code stored before resources were kept reads as
/// having none.
pub const TAKE_CODE: &str = r#"
local t = redis.call('HGETALL', KEYS[1])
if #t == 0 then return {'invalid'} end
local c = {}
for i = 1, #t, 2 do c[t[i]] = t[i + 1] end
if c.used == '1' then return {'reused', c.issued_jti, c.issued_exp, c.issued_family} end
redis.call('HSET', KEYS[1], 'used', '1')
if tonumber(c.expires_at) < tonumber(ARGV[1]) then return {'invalid'} end
return {'fresh', c.client_id, c.redirect_uri, c.challenge, c.subject, c.scopes, c.nonce,
  c.auth_time, c.expires_at, c.resource or ''}
"#;

/// Revokes a family and the access tokens issued from it: `KEYS[1]` the family, `KEYS[2]` its tokens,
/// `KEYS[3]` the revocation set; `ARGV[1]` the channel. Returns the tokens as {jti, exp, ...}.
pub const REVOKE_FAMILY: &str = r#"
redis.call('HSET', KEYS[1], 'revoked', '1')
local toks = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #toks, 2 do
  redis.call('ZADD', KEYS[3], 'GT', toks[i + 1], toks[i])
  redis.call('PUBLISH', ARGV[1], toks[i] .. ' ' .. toks[i + 1] .. ' ' .. ARGV[2])
end
return toks
"#;

/// Stores a session and lists it in its indexes: `KEYS[1]` the session, KEYS[2..] the indexes; ARGV:
/// the record's fields as name/value pairs, then the key's expiry, then the indexes' expiry. An index
/// lives as long as its longest-lived session.
pub const PUT_SESSION: &str = r#"
local n = #ARGV - 2
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 1, n))
redis.call('EXPIREAT', KEYS[1], ARGV[n + 1])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  local ttl = redis.call('TTL', KEYS[i])
  local want = tonumber(ARGV[n + 2]) - tonumber(redis.call('TIME')[1])
  if ttl < want then redis.call('EXPIREAT', KEYS[i], ARGV[n + 2]) end
end
"#;

/// Moves a session's idle deadline: `KEYS[1]` the session; `ARGV[1]` the new deadline.
pub const TOUCH_SESSION: &str = r#"
local exp = redis.call('HGET', KEYS[1], 'expires_at')
if not exp then return 0 end
local deadline = math.min(tonumber(ARGV[1]), tonumber(exp))
redis.call('HSET', KEYS[1], 'idle_until', deadline)
redis.call('EXPIREAT', KEYS[1], deadline)
return 1
"#;

/// Ends sessions: those an index (`KEYS[2]`) lists, or with `ARGV[4]` = "one" the one session key
/// `KEYS[2]`. Each one ended is added to the revoked set (`KEYS[1]`) under its session name
/// (`ARGV[3]` followed by its hash, the key without its prefix `ARGV[2]`) until its idle deadline,
/// and announced on the revocations channel (`ARGV[1]`) as `"<name> <exp> <sent_ms>"`, so gateways
/// holding it in memory drop it at once. Returns how many ended.
pub const END_SESSIONS: &str = r#"
local keys
if ARGV[4] == 'one' then keys = {KEYS[2]} else keys = redis.call('SMEMBERS', KEYS[2]) end
local t = redis.call('TIME')
local ms = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000))
local n = 0
for _, k in ipairs(keys) do
  local times = redis.call('HMGET', k, 'expires_at', 'idle_until')
  if redis.call('DEL', k) == 1 then
    n = n + 1
    if times[1] and times[2] then
      local exp = string.format('%.0f', math.min(tonumber(times[1]), tonumber(times[2])))
      local name = ARGV[3] .. string.sub(k, string.len(ARGV[2]) + 1)
      redis.call('ZADD', KEYS[1], 'GT', exp, name)
      redis.call('PUBLISH', ARGV[1], name .. ' ' .. exp .. ' ' .. ms)
    end
  end
end
if ARGV[4] ~= 'one' then redis.call('DEL', KEYS[2]) end
return n
"#;

/// Every script with its name, for a test that has a real Redis compile them all.
pub const ALL: [(&str, &str); 6] = [
    ("rotate", ROTATE),
    ("take_code", TAKE_CODE),
    ("revoke_family", REVOKE_FAMILY),
    ("put_session", PUT_SESSION),
    ("touch_session", TOUCH_SESSION),
    ("end_sessions", END_SESSIONS),
];
