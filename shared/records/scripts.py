"""The Lua scripts that make each step of a certificate request atomic (submit, claim, commit)."""

# Submit: idempotency claim, PENDING record and outbox entry in one step.
SUBMIT = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, ''} end
redis.call('HSET', KEYS[1], 's', 'P', 'r', ARGV[2], 't', ARGV[3], 'a', '0')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4]) end
return {1, ARGV[1]}
"""

# Claim: lease each still-PENDING, unleased request to one owner; fail those past their attempts.
CLAIM = """
local now = tonumber(ARGV[2])
local lease_until = now + tonumber(ARGV[3])
local max_attempts = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV do
  local member = ARGV[i]
  local key = KEYS[2] .. member
  local st = redis.call('HGET', key, 's')
  if st == 'P' then
    local lease = tonumber(redis.call('HGET', key, 'l') or '0')
    if lease < now then
      local attempts = redis.call('HINCRBY', key, 'a', 1)
      if attempts > max_attempts then
        redis.call('HSET', key, 's', 'F', 'e', 'Issuance was abandoned after ' .. max_attempts .. ' attempts.')
        redis.call('HDEL', key, 'r', 'o', 'l')
        redis.call('ZREM', KEYS[1], member)
      else
        redis.call('HSET', key, 'o', ARGV[1], 'l', lease_until)
        redis.call('ZADD', KEYS[1], lease_until, member)
        table.insert(out, member)
        table.insert(out, redis.call('HGET', key, 'r'))
      end
    end
  elseif st then
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
"""

# Commit: write a result only on the PENDING -> ISSUED/FAILED transition, and only for the lease owner.
COMMIT = """
local done = 0
for i = 2, #ARGV, 3 do
  local member = ARGV[i]
  local key = KEYS[2] .. member
  if redis.call('HGET', key, 's') == 'P' and redis.call('HGET', key, 'o') == ARGV[1] then
    if ARGV[i + 1] == 'I' then
      redis.call('HSET', key, 's', 'I', 'c', ARGV[i + 2], 'd', ARGV[#ARGV])
    else
      redis.call('HSET', key, 's', 'F', 'e', ARGV[i + 2], 'd', ARGV[#ARGV])
    end
    redis.call('HDEL', key, 'r', 'o', 'l')
    redis.call('ZREM', KEYS[1], member)
    done = done + 1
  end
end
return done
"""
