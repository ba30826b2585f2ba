"""The Lua scripts that make each step of a certificate request atomic (submit, claim, commit).

The outbox (a sorted set) scores each unfinished request with the time from which a worker may take
it: the submit time, then the end of each lease. Workers pull ready requests from it in batches, so
a request whose worker died becomes ready again by itself when its lease ends.

A request's audit entries and metrics are written by the same script as the state change they
describe, so a crash (of a worker or of Redis) can never keep one without the other.
"""

from pcaq.records import pending
from pcaq.records.audit_trail import CERTIFICATE_FAILED, WORKER
from pcaq.records.keys import OCSP_HASHES
from pcaq.records.metrics import ABANDONED, LATENCY_BUCKETS
from pcaq.records.series import SERIES_TTL

# Submit: CA gate check, idempotency claim, PENDING record, outbox entry and drain kick in one step.
# The submitter asks for a drain (kicked) only when no drain is taking work (the draining mark, kept
# alive by the claims of a running drain) and none was asked for within the kick window.
# KEYS: record, outbox, idempotency key or '', drain kick, CA gate or '' (no check), audit stream or '',
#       draining mark, the CA's pending index (the console's backlog per CA: one ZADD, O(log n))
# ARGV: serial, request, now, idempotency TTL, member, kick ms, expected CA version, audit MAXLEN,
#       then the audit entry's field/value pairs (appended with the record, in the same step)
# Returns {1, serial, kicked} new; {0, serial} idempotent repeat; {-1} serial taken; {-2} CA changed.
SUBMIT = """
if KEYS[5] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[7] then return {-2, ''} end
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, ''} end
redis.call('HSET', KEYS[1], 's', 'P', 'r', ARGV[2], 't', ARGV[3], 'a', '0')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[8], ARGV[3], ARGV[1])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4]) end
if KEYS[6] ~= '' then redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], '*', unpack(ARGV, 9)) end
local kicked = 0
if redis.call('EXISTS', KEYS[7]) == 0 and redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[6]) then
  kicked = 1
end
return {1, ARGV[1], kicked}
"""

# The words of the audit entries and failure counts the claim and commit scripts write.
_WORDS = {
    "WORKER": WORKER,
    "FAILED_EVENT": CERTIFICATE_FAILED,
    "ABANDONED": ABANDONED,
    "BOUNDS": ", ".join(repr(float(b)) for b in LATENCY_BUCKETS),
    "REQUEST_ID": pending.REQUEST_ID_KEY,
    "NO_REQUEST_ID": pending.NO_REQUEST_ID,
    "SERIES_TTL": SERIES_TTL,
}

# Give up a request whose leases all ended without a commit (its worker kept dying): FAILED, counted
# with the failures by reason, and its audit entry (with the request id IssueCertificate answered,
# read from the stored request: the one field of a PendingRequest a script reads, see
# shared/records/pending.py) appended in the same step. Returns that request id.
_ABANDON = """
local function request_id_of(raw)
  local ok, doc = pcall(cjson.decode, raw or '')
  if ok and type(doc) == 'table' and type(doc['{REQUEST_ID}']) == 'string' then return doc['{REQUEST_ID}'] end
  return '{NO_REQUEST_ID}'
end
local function abandon(key, member, max_attempts)
  local reason = 'Issuance was abandoned after ' .. max_attempts .. ' attempts.'
  local request_id = request_id_of(redis.call('HGET', key, 'r'))
  redis.call('HSET', key, 's', 'F', 'e', reason, 'd', ARGV[2])
  redis.call('HDEL', key, 'r', 'o', 'l')
  redis.call('ZREM', KEYS[1], member)
  redis.call('HINCRBY', KEYS[5], 'failed:{ABANDONED}', 1)
  redis.call('XADD', KEYS[11], '*', 'm', member)
  local ca_id, serial = string.match(member, '^(.*):([^:]*)$')
  redis.call('ZREM', KEYS[9] .. ca_id .. ':pending', serial)
  redis.call('ZADD', KEYS[9] .. ca_id .. ':failed', ARGV[2], serial)
  local minute = KEYS[10] .. math.floor(tonumber(ARGV[2]) / 60)
  redis.call('HINCRBY', minute, 'f:{ABANDONED}', 1)
  redis.call('EXPIRE', minute, {SERIES_TTL})
  local ok, ca = pcall(cjson.decode, redis.call('GET', KEYS[3] .. ca_id) or '')
  if ok and type(ca) == 'table' and type(ca.Arn) == 'string' then
    local account = string.match(ca.Arn, '^arn:[^:]*:[^:]*:[^:]*:([^:]*):') or '-'
    local details = '{{"CertificateArn":"' .. ca.Arn .. '/certificate/' .. serial .. '","Reason":"' .. reason .. '"}}'
    redis.call('XADD', KEYS[4] .. ca_id, 'MAXLEN', '~', ARGV[5], '*', 'when', ARGV[2], 'event', '{FAILED_EVENT}',
      'who', '{WORKER}', 'account', account, 'request_id', request_id, 'ca', ca.Arn, 'details', details)
  end
  return request_id
end
""".format(**_WORDS)

# One command over a whole batch's items (a call per member costs Redis more than the work it does),
# in slices that stay under Lua's limit on unpacked arguments (8,000 on Redis 7).
_BULK = """
local function bulk(command, key, items)
  for first = 1, #items, 1000 do
    redis.call(command, key, unpack(items, first, math.min(first + 999, #items)))
  end
end
"""

# A drain's claim: lease up to ARGV[6] requests that are ready now (oldest first) to ARGV[1]; give up
# those past max attempts (FAILED, see _ABANDON); drop from the outbox the members whose record is
# gone or finished (the outbox entries of a batch are moved by one ZADD and dropped by one ZREM). A
# claim that leased something keeps the draining mark alive (submitters then leave the waking to this
# drain). A full claim (more may be ready) asks for a helper drain, so that idle worker processes join,
# but only while no helper asked for is yet to start: it sets the helper mark to this claim's token and
# answers 1, and the caller sends the message. It also takes up to ARGV[10] urgent jobs
# (shared/urgent.py), which the drain serves before the batch.
# KEYS: outbox, record prefix, CA document prefix, audit stream prefix, outcomes hash, draining mark,
#       helper mark, urgent list, CA index prefix, series prefix, archive queue (a request given up is
#       finished: the archiver takes it).
# ARGV: owner, now, lease, max attempts, audit MAXLEN, limit, draining ms, helper token ('': never
#       ask), helper ms, urgent jobs to take.
# Returns {leased, abandoned, helper, urgent}: (member, request) pairs now leased to the owner, (member,
# request id) pairs of the requests given up after max attempts, 1 if the caller must send the helper
# drain, and the urgent jobs taken.
CLAIM_READY = (
    _ABANDON
    + _BULK
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[6]))
local now = tonumber(ARGV[2])
local lease_until = now + tonumber(ARGV[3])
local max_attempts = tonumber(ARGV[4])
local out, abandoned, leases, gone = {}, {}, {}, {}
for _, member in ipairs(members) do
  local key = KEYS[2] .. member
  local state = redis.call('HMGET', key, 's', 'l', 'r')
  if state[1] == 'P' then
    if tonumber(state[2] or '0') < now then
      local attempts = redis.call('HINCRBY', key, 'a', 1)
      if attempts > max_attempts then
        table.insert(abandoned, member)
        table.insert(abandoned, abandon(key, member, max_attempts))
      else
        redis.call('HSET', key, 'o', ARGV[1], 'l', lease_until)
        table.insert(leases, lease_until)
        table.insert(leases, member)
        table.insert(out, member)
        table.insert(out, state[3])
      end
    end
  else
    table.insert(gone, member)
  end
end
bulk('ZADD', KEYS[1], leases)
bulk('ZREM', KEYS[1], gone)
local helper = 0
if #out > 0 then redis.call('SET', KEYS[6], '1', 'PX', ARGV[7]) end
if ARGV[8] ~= '' and #members == tonumber(ARGV[6]) and redis.call('SET', KEYS[7], ARGV[8], 'NX', 'PX', ARGV[9]) then
  helper = 1
end
local urgent = {}
if tonumber(ARGV[10]) > 0 then urgent = redis.call('LPOP', KEYS[8], ARGV[10]) or {} end
return {out, abandoned, helper, urgent}
"""
)

# Ask for urgent work (shared/revocation/urgent.py): append the job unless ARGV[2] are waiting already (-1), and
# say whether a worker must be woken (1) or a running drain will take it (0: the draining mark is
# alive; a drain looks once more after it clears the mark, so nothing falls in between). For a running
# drain it publishes a word on the signal channel, which a drain signing a batch listens to.
# KEYS: urgent list, draining mark, signal channel. ARGV: job, most jobs waiting, list TTL seconds.
ASK_URGENT = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', KEYS[3], '1')
  return 0
end
return 1
"""

# Keep a lock that is still one's own: extend its expiry only if it holds the owner's token (a GET then a
# PEXPIRE could extend a lock that lapsed in between and was taken by another owner).
# KEYS: the lock. ARGV: owner token, milliseconds. Returns 1 kept, 0 not ours.
EXTEND_OWN_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# A helper drain has started: its mark is cleared (only if it is still its own), so that the next full
# claim may ask for another. KEYS: helper mark. ARGV: the helper's token.
HELPER_STARTED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Commit: write a result only on the PENDING -> ISSUED/FAILED transition, and only for the lease owner.
# For each result that takes, in the same step: its audit entry (fields rendered by the caller, appended
# to the CA's stream with approximate MAXLEN), its count in the metrics (outcome, failure reason,
# ARN -> ISSUED latency from the record's submit time), and its place in the CA's console indexes
# (out of pending; into issued, expiry and names, or failed). Once per commit, not per result, this
# minute's series hash gets the issued count of this second, the failures by reason and the latency
# buckets (kept SERIES_TTL seconds). A result that does not take leaves no trace. The members finished
# go to the archive queue as one stream entry (shared/records/retention.py).
# KEYS: outbox, record prefix, audit stream prefix, latency hash, outcomes hash, CA index prefix,
#       series prefix, archive queue.
# ARGV: owner, now, audit MAXLEN, unexpected signing errors, then per result: member, 'I'|'F', DER or
#       reason, failure reason class ('' if issued), not after (epoch s, '' unknown), m, n, then m
#       lower-cased names (CN and SANs) and n audit field/value strings (0: no entry).
# Returns how many results took.
COMMIT = (
    _BULK
    + """
local owner, now = ARGV[1], ARGV[2]
local bounds = {{{BOUNDS}}}
local done, issued, sum = 0, 0, 0
local buckets, failed, finished = {{}}, {{}}, {{}}
local i = 5
while i <= #ARGV do
  local member, m, n = ARGV[i], tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
  local key = KEYS[2] .. member
  local state = redis.call('HMGET', key, 's', 'o', 't')
  if state[1] == 'P' and state[2] == owner then
    local ca_id, serial = string.match(member, '^(.*):([^:]*)$')
    local index = KEYS[6] .. ca_id .. ':'
    redis.call('ZREM', index .. 'pending', serial)
    if ARGV[i + 1] == 'I' then
      redis.call('HSET', key, 's', 'I', 'c', ARGV[i + 2], 'd', now)
      local seconds = math.max(0, tonumber(now) - tonumber(state[3] or now))
      local b = #bounds + 1
      for j = 1, #bounds do
        if seconds <= bounds[j] then b = j; break end
      end
      buckets[b] = (buckets[b] or 0) + 1
      sum = sum + seconds
      issued = issued + 1
      redis.call('ZADD', index .. 'issued', now, serial)
      if ARGV[i + 4] ~= '' then redis.call('ZADD', index .. 'expiry', ARGV[i + 4], serial) end
      if m > 0 then
        local names = {{}}
        for k = 1, m do
          names[#names + 1] = 0
          names[#names + 1] = ARGV[i + 6 + k] .. '\0' .. serial
        end
        bulk('ZADD', index .. 'names', names)
      end
    else
      redis.call('HSET', key, 's', 'F', 'e', ARGV[i + 2], 'd', now)
      redis.call('ZADD', index .. 'failed', now, serial)
      local reason = ARGV[i + 3]
      if reason == '' then reason = 'Other' end
      failed[reason] = (failed[reason] or 0) + 1
    end
    redis.call('HDEL', key, 'r', 'o', 'l')
    finished[#finished + 1] = member
    if n > 0 then
      redis.call('XADD', KEYS[3] .. ca_id, 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, i + 7 + m, i + 6 + m + n))
    end
    done = done + 1
  end
  i = i + 7 + m + n
end
bulk('ZREM', KEYS[1], finished)
if #finished > 0 then redis.call('XADD', KEYS[8], '*', 'm', table.concat(finished, ' ')) end
local errors = tonumber(ARGV[4])
if errors > 0 then redis.call('HINCRBY', KEYS[5], 'error:unexpected', errors) end
for b, c in pairs(buckets) do redis.call('HINCRBY', KEYS[4], b, c) end
if done > 0 then
  local second = math.floor(tonumber(now))
  local minute = KEYS[7] .. math.floor(second / 60)
  if issued > 0 then
    redis.call('HINCRBY', KEYS[4], 'count', issued)
    redis.call('HINCRBYFLOAT', KEYS[4], 'sum', string.format('%.6f', sum))
    redis.call('HINCRBY', KEYS[5], 'issued', issued)
    redis.call('HINCRBY', minute, 'i:' .. (second % 60), issued)
    redis.call('HINCRBY', minute, 'lc', issued)
    redis.call('HINCRBYFLOAT', minute, 'ls', string.format('%.6f', sum))
    for b, c in pairs(buckets) do redis.call('HINCRBY', minute, 'b:' .. b, c) end
  end
  for reason, c in pairs(failed) do
    redis.call('HINCRBY', KEYS[5], 'failed:' .. reason, c)
    redis.call('HINCRBY', minute, 'f:' .. reason, c)
  end
  redis.call('EXPIRE', minute, {SERIES_TTL})
end
return done
""".format(**_WORDS)
)

# Revoke: mark one ISSUED certificate revoked, once; queue its CRL rebuild; drop cached OCSP answers;
# append the revocation's audit entry (first, so that an error there leaves nothing half written);
# queue the record for the archive again (its archived copy gains the revocation) and take it out of
# the retention index until the archiver put it back (so it cannot leave Redis before that copy is made).
# KEYS: record, revoked set, CRL hash, CRL dirty set, audit stream or '', archive queue, retention index,
#       then the cached OCSP answers (one per hash).
# ARGV: serial, now, reason, not after, CA id, limit of revoked serials, audit MAXLEN, then the audit
#       entry's field/value pairs.
# Returns 1 revoked; 0 already revoked; -1 no record; -2 not ISSUED (code 'P' or 'F' as 2nd item); -3 limit.
REVOKE = """
local s = redis.call('HGET', KEYS[1], 's')
if not s then return {-1, ''} end
if s ~= 'I' then return {-2, s} end
if redis.call('HEXISTS', KEYS[1], 'rv') == 1 then return {0, ''} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {-3, ''} end
if KEYS[5] ~= '' then redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', unpack(ARGV, 8)) end
redis.call('HSET', KEYS[1], 'rv', ARGV[2], 'rr', ARGV[3], 'na', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'want', 1)
redis.call('ZADD', KEYS[4], 'NX', ARGV[2], ARGV[5])
redis.call('XADD', KEYS[6], '*', 'm', ARGV[5] .. ':' .. ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[5] .. ':' .. ARGV[1])
for i = 8, #KEYS do redis.call('DEL', KEYS[i]) end
return {1, ''}
"""

# Save a CRL unless a newer one (higher CRL number) is stored; mark the CA clean when the CRL covers
# every revocation counted so far. KEYS: CRL hash, dirty set, refresh set, kick.
# ARGV: der, number, this update, next update, revocations covered, config fingerprint, refresh at, CA id.
# Returns 0 not stored (older); 1 stored, revocations still missing; 2 stored and clean.
SAVE_CRL = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'number') or '0')
if stored >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'der', ARGV[1], 'number', ARGV[2], 'this', ARGV[3], 'next', ARGV[4],
  'built', ARGV[5], 'cfg', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[8])
if tonumber(redis.call('HGET', KEYS[1], 'want') or '0') <= tonumber(ARGV[5]) then
  redis.call('ZREM', KEYS[2], ARGV[8])
  redis.call('DEL', KEYS[4])
  return 2
end
return 1
"""

# Add ('add') or remove ('remove') a CA's permission, with the call's audit entry, only if that changes
# the hash. KEYS: permissions hash, audit stream or ''.
# ARGV: 'add' | 'remove', field, permission JSON, audit MAXLEN, then the audit entry's field/value pairs.
# Returns 1 changed; 0 not (the principal already holds one, or there is none to remove).
PERMISSION = """
local adding = ARGV[1] == 'add'
if (redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1) == adding then return 0 end
if KEYS[2] ~= '' then redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5)) end
if adding then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) else redis.call('HDEL', KEYS[1], ARGV[2]) end
return 1
"""

# Cache a signed OCSP answer only if the record still says what the answer says (a revocation that
# landed while it was being signed must not be hidden behind a cached "good").
# KEYS: record, cache key. ARGV: der, seconds to keep, claimed status ('good', 'revoked', 'unknown').
CACHE_OCSP = """
local state = redis.call('HMGET', KEYS[1], 's', 'rv')
local now = 'unknown'
if state[1] == 'I' then
  if state[2] then now = 'revoked' else now = 'good' end
end
if now ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1
"""

# Remove records whose time has come (shared/records/retention.py): only members still in the retention
# index with a due score (a revocation takes its record out of the index until it is archived again),
# each with its revocation entry and cached OCSP answers. Callers pass small batches: this script holds
# Redis for a fraction of a millisecond. The record leaves the CA's console indexes too (its names are
# passed in: they are in the certificate, which Lua cannot read).
# KEYS: retention index, record prefix, revoked set prefix, OCSP answer prefix, records metrics hash,
#       CA index prefix.
# ARGV: now, then per member: member, n, then its n lower-cased names. Returns how many were removed.
REMOVE_RECORDS = """
local now, removed = tonumber(ARGV[1]), 0
local hashes = {{{HASHES}}}
local kinds = {{'pending', 'issued', 'failed', 'expiry'}}
local i = 2
while i <= #ARGV do
  local member, n = ARGV[i], tonumber(ARGV[i + 1])
  local due = redis.call('ZSCORE', KEYS[1], member)
  if due and tonumber(due) <= now then
    local ca_id, serial = string.match(member, '^(.*):([^:]*)$')
    redis.call('DEL', KEYS[2] .. member)
    redis.call('ZREM', KEYS[3] .. ca_id, serial)
    for _, h in ipairs(hashes) do redis.call('DEL', KEYS[4] .. ca_id .. ':' .. h .. ':' .. serial) end
    redis.call('ZREM', KEYS[1], member)
    local index = KEYS[6] .. ca_id .. ':'
    for _, kind in ipairs(kinds) do redis.call('ZREM', index .. kind, serial) end
    for k = 1, n do redis.call('ZREM', index .. 'names', ARGV[i + 1 + k] .. '\\0' .. serial) end
    removed = removed + 1
  end
  i = i + 2 + n
end
if removed > 0 then redis.call('HINCRBY', KEYS[5], 'removed', removed) end
return removed
""".format(HASHES=", ".join(repr(h) for h in OCSP_HASHES))

# Release: a drain that lost Redis part-way (a failover, an outage) hands back the requests leased to
# it, so that they are ready at once on whichever server is the primary now, instead of after their
# lease. It names the window its leases end in (its claims' times plus the lease), which also finds
# leases of claims whose reply it never read; only requests still PENDING and leased to this owner
# are touched, and the attempt the claim counted is given back (nothing was signed to the end).
# KEYS: outbox, record prefix. ARGV: owner, now, earliest and latest lease end. Returns how many.
RELEASE = """
local n = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[4])) do
  local key = KEYS[2] .. member
  local state = redis.call('HMGET', key, 's', 'o')
  if state[1] == 'P' and state[2] == ARGV[1] then
    redis.call('HDEL', key, 'o', 'l')
    redis.call('HINCRBY', key, 'a', -1)
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    n = n + 1
  end
end
return n
"""
