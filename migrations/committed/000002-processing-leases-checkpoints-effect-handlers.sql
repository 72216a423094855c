--! Previous: sha1:2e29663d95506b3500be88b83a8727712c01d74a
--! Hash: sha1:9c2d52c21e95d80b90b8b08109be08e99a5f5802
--! Message: processing leases, checkpoints, effect handlers

-- ============================================================================
-- Processing: leases with fencing tokens, and the run commit.
--
-- A processor owns a session through a lease (owner, token, expiry). Every
-- claim increases lease_token; commit_run succeeds only while the caller's
-- token is still the session's token, so a processor that lost its lease
-- (paused, partitioned, slow) commits nothing and the new owner redoes the
-- event. Lock order everywhere: the per-session advisory lock, then the row.
-- ============================================================================

create function sessiond.claim_session(session_key text, owner text, ttl_ms integer) returns bigint
  language sql volatile
as $$
  update sessiond.sessions s
     set lease_owner = claim_session.owner,
         lease_token = s.lease_token + 1,
         lease_expires_at = clock_timestamp() + make_interval(secs => ttl_ms / 1000.0),
         updated_at = now()
   where s.session_key = claim_session.session_key
     and (s.lease_owner is null or s.lease_expires_at <= clock_timestamp())
  returning s.lease_token
$$;
comment on function sessiond.claim_session(text, text, integer) is
  'Takes the processing lease of a session if it is free or expired: returns the new fencing token (always larger than any before), or null when another owner holds a live lease.';

create type sessiond.claimed_session as (session_key text, lease_token bigint);
comment on type sessiond.claimed_session is 'A session whose lease claim_sessions took, with its new fencing token.';

create function sessiond.claim_sessions(owner text, ttl_ms integer, max_sessions integer)
returns setof sessiond.claimed_session
  language sql volatile
as $$
  with candidates as (
    select s.session_key from sessiond.sessions s
     where s.processed_seq < s.last_seq
       and (s.lease_owner is null or s.lease_expires_at <= clock_timestamp())
     order by s.updated_at
     limit greatest(max_sessions, 0)
     for update skip locked
  )
  update sessiond.sessions s
     set lease_owner = claim_sessions.owner,
         lease_token = s.lease_token + 1,
         lease_expires_at = clock_timestamp() + make_interval(secs => ttl_ms / 1000.0),
         updated_at = now()
    from candidates c
   where s.session_key = c.session_key
  returning s.session_key::text, s.lease_token
$$;
comment on function sessiond.claim_sessions(text, integer, integer) is
  'The sweep: takes the leases of up to max_sessions sessions that have unprocessed events and no live lease (free or expired), skipping rows other claimers hold. Returns each with its new fencing token.';

create function sessiond.heartbeat_session(session_key text, owner text, lease_token bigint, ttl_ms integer)
returns boolean
  language sql volatile
as $$
  with renewed as (
    update sessiond.sessions s
       set lease_expires_at = clock_timestamp() + make_interval(secs => ttl_ms / 1000.0)
     where s.session_key = heartbeat_session.session_key
       and s.lease_owner = heartbeat_session.owner
       and s.lease_token = heartbeat_session.lease_token
    returning 1
  )
  select exists (select 1 from renewed)
$$;
comment on function sessiond.heartbeat_session(text, text, bigint, integer) is
  'Extends a lease the caller still holds (same owner and token); false when the lease was lost.';

create function sessiond.release_session(session_key text, owner text, lease_token bigint) returns boolean
  language sql volatile
as $$
  with released as (
    update sessiond.sessions s
       set lease_owner = null, lease_expires_at = null, updated_at = now()
     where s.session_key = release_session.session_key
       and s.lease_owner = release_session.owner
       and s.lease_token = release_session.lease_token
    returning 1
  )
  select exists (select 1 from released)
$$;
comment on function sessiond.release_session(text, text, bigint) is
  'Gives a lease back (same owner and token) so another processor may claim the session at once; false when it was not held.';

create function sessiond.commit_run(session_key text, lease_token bigint, outcomes jsonb, effects jsonb)
returns setof sessiond.enqueued_effect
  language plpgsql volatile
as $$
#variable_conflict use_column
declare
  _session sessiond.sessions;
  _outcome jsonb;
  _expected bigint;
begin
  perform sessiond.session_lock(commit_run.session_key);
  select s.* into _session from sessiond.sessions s where s.session_key = commit_run.session_key for update;
  if not found then
    raise exception 'sessiond: unknown session %', commit_run.session_key using errcode = '22023';
  end if;
  if _session.lease_token <> commit_run.lease_token then
    raise exception 'sessiond: lease lost on session % (token % is not the current %)',
      commit_run.session_key, commit_run.lease_token, _session.lease_token
      using errcode = 'SDL01', hint = 'Another processor took the session over; it redoes the event.';
  end if;
  if jsonb_typeof(outcomes) is distinct from 'array' or jsonb_array_length(outcomes) = 0 then
    raise exception 'sessiond: outcomes must be a non-empty JSON array' using errcode = '22023';
  end if;

  _expected := _session.processed_seq;
  for _outcome in select value from jsonb_array_elements(outcomes) loop
    _expected := _expected + 1;
    if (_outcome->>'seq')::bigint is distinct from _expected or _expected > _session.last_seq then
      raise exception 'sessiond: out-of-order commit on session %: expected event %, got %',
        commit_run.session_key, _expected, _outcome->>'seq'
        using errcode = 'SDO01';
    end if;
    insert into sessiond.event_outcomes (session_key, seq, status, error, attempts, lease_token, started_at)
    values (commit_run.session_key, _expected, coalesce(_outcome->>'status', 'processed'), _outcome->>'error',
            coalesce((_outcome->>'attempts')::integer, 1), commit_run.lease_token,
            (_outcome->>'started_at')::timestamptz);
  end loop;

  update sessiond.sessions s set processed_seq = _expected, updated_at = now()
   where s.session_key = commit_run.session_key;

  if effects is not null and jsonb_typeof(effects) = 'array' and jsonb_array_length(effects) > 0 then
    return query select * from sessiond.enqueue_effects(commit_run.session_key, effects);
  end if;
end
$$;
comment on function sessiond.commit_run(text, bigint, jsonb, jsonb) is
  'Commits the outcome of a run in the caller''s transaction: only while lease_token is still the session''s token (else SQLSTATE SDL01, nothing written), only for the next events in order (else SDO01). Records each outcome ([{seq, status, error?, attempts?, started_at?}]), advances processed_seq and enqueues the run''s effects. The caller writes the checkpoint in the same transaction.';

-- ============================================================================
-- Checkpoints: LangGraph's checkpointer tables (thread_id = session key).
-- Channel values live in checkpoint_blobs, one row per channel version, so a
-- checkpoint stores only what changed.
-- ============================================================================

create table sessiond.checkpoints (
  thread_id text not null check (length(thread_id) between 1 and 200),
  checkpoint_ns text not null default '',
  checkpoint_id text not null,
  parent_checkpoint_id text,
  type text,
  checkpoint bytea not null,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  primary key (thread_id, checkpoint_ns, checkpoint_id)
);
comment on table sessiond.checkpoints is
  'LangGraph checkpoints (serialised without channel values), one per step, per thread (= session key) and namespace.';

create table sessiond.checkpoint_blobs (
  thread_id text not null,
  checkpoint_ns text not null default '',
  channel text not null,
  version text not null,
  type text not null,
  blob bytea,
  primary key (thread_id, checkpoint_ns, channel, version)
);
comment on table sessiond.checkpoint_blobs is 'LangGraph channel values, one row per channel version.';

create table sessiond.checkpoint_writes (
  thread_id text not null,
  checkpoint_ns text not null default '',
  checkpoint_id text not null,
  task_id text not null,
  idx integer not null,
  channel text not null,
  type text,
  blob bytea not null,
  task_path text not null default '',
  primary key (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
comment on table sessiond.checkpoint_writes is 'LangGraph pending writes of tasks, per checkpoint.';

-- ============================================================================
-- Effect handlers: claim, complete, fail with backoff, dead letter, retry.
-- ============================================================================

create function sessiond.claim_effects(owner text, types text[], max_effects integer, claim_ms integer)
returns setof sessiond.effects
  language plpgsql volatile
as $$
#variable_conflict use_column
begin
  -- An effect whose runner died (or stalled past its claim) on its last attempt is
  -- dead, not retried forever; the error of an earlier attempt, if any, is kept.
  update sessiond.effects e
     set status = 'dead',
         last_error = left(coalesce(e.last_error || '; then ', '') || format(
           'claim of attempt %s expired while executing (the runner died or stalled)', e.attempts), 4000)
   where e.status = 'executing' and e.claim_expires_at <= clock_timestamp() and e.attempts >= e.max_attempts
     and e.type = any(claim_effects.types) and e.delivery = 'handler';

  return query
  with candidates as (
    select e.session_key, e.seq from sessiond.effects e
     where e.delivery = 'handler' and e.type = any(claim_effects.types)
       and ((e.status in ('pending', 'failed') and e.available_at <= clock_timestamp())
            -- attempts < max_attempts: a claim that expired between the statement above and
            -- this one must not be taken for an attempt past the limit.
            or (e.status = 'executing' and e.claim_expires_at <= clock_timestamp()
                and e.attempts < e.max_attempts))
       and (not e.ordered or not exists (
             select 1 from sessiond.effects p
              where p.session_key = e.session_key and p.ordered and p.seq < e.seq
                and p.status not in ('completed', 'dead')))
     order by e.available_at, e.session_key, e.seq
     limit greatest(max_effects, 0)
     for update skip locked
  )
  update sessiond.effects e
     set status = 'executing', attempts = e.attempts + 1, claimed_by = claim_effects.owner,
         claim_expires_at = clock_timestamp() + make_interval(secs => claim_ms / 1000.0)
    from candidates c
   where e.session_key = c.session_key and e.seq = c.seq
  returning e.*;
end
$$;
comment on function sessiond.claim_effects(text, text[], integer, integer) is
  'Claims up to max_effects due handler effects of the given types (pending or failed and due, or executing with an expired claim and attempts left) with FOR UPDATE SKIP LOCKED: no effect is claimed twice at once. Each claim counts an attempt and stores owner in claimed_by (a runner passes a fresh owner per claim, so a handler that outlived its claim cannot complete a later claim). An ordered effect waits until every earlier ordered effect of its session is completed or dead. Marks executing effects whose claim expired after their last attempt as dead.';

create function sessiond.complete_effect(session_key text, seq bigint, owner text) returns boolean
  language sql volatile
as $$
  with done as (
    update sessiond.effects e set status = 'completed'
     where e.session_key = complete_effect.session_key and e.seq = complete_effect.seq
       and e.status = 'executing' and e.claimed_by = complete_effect.owner
    returning 1
  )
  select exists (select 1 from done)
$$;
comment on function sessiond.complete_effect(text, bigint, text) is
  'Marks an effect the caller has claimed as completed; false when the claim was lost (another runner reclaimed it).';

create function sessiond.fail_effect(
  session_key text, seq bigint, owner text, error text,
  permanent boolean default false, backoff_base_ms integer default 1000, backoff_cap_ms integer default 300000
) returns text
  language sql volatile
as $$
  with failed as (
    update sessiond.effects e
       set status = case when fail_effect.permanent or e.attempts >= e.max_attempts then 'dead' else 'failed' end,
           last_error = left(fail_effect.error, 4000),
           available_at = clock_timestamp() + make_interval(secs =>
             least(backoff_cap_ms, backoff_base_ms * power(2, greatest(e.attempts - 1, 0)))
             * (0.5 + random() / 2) / 1000.0)
     where e.session_key = fail_effect.session_key and e.seq = fail_effect.seq
       and e.status = 'executing' and e.claimed_by = fail_effect.owner
    returning e.status
  )
  select status from failed
$$;
comment on function sessiond.fail_effect(text, bigint, text, text, boolean, integer, integer) is
  'Records a failed attempt of an effect the caller has claimed: failed, due again after an exponential backoff with jitter (base·2^(attempts−1), capped, times 0.5..1), or dead when permanent or out of attempts. Returns the new status, or null when the claim was lost.';

create function sessiond.retry_effect(id uuid) returns sessiond.effects
  language plpgsql volatile
as $$
declare
  _effect sessiond.effects;
begin
  update sessiond.effects e
     set status = 'pending', attempts = 0, available_at = clock_timestamp()
   where e.id = retry_effect.id and e.status in ('dead', 'failed')
  returning e.* into _effect;
  if not found then
    raise exception 'sessiond: no dead or failed effect with id %', retry_effect.id using errcode = '22023';
  end if;
  perform pg_notify('sessiond_effects', jsonb_build_array(jsonb_build_array(_effect.session_key, _effect.seq))::text);
  return _effect;
end
$$;
comment on function sessiond.retry_effect(uuid) is
  'An operator''s retry: a dead or failed effect becomes pending with its attempts reset, and runners are notified.';

create function sessiond.list_effects(status text default null, max_rows integer default 100)
returns setof sessiond.effects
  language sql stable
as $$
  select * from sessiond.effects e
   where list_effects.status is null or e.status = list_effects.status
   order by e.updated_at desc
   limit greatest(1, least(max_rows, 10000))
$$;
comment on function sessiond.list_effects(text, integer) is
  'Effects by status (all when null), most recently changed first.';
