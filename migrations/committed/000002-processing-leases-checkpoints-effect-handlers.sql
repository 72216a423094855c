--! Previous: sha1:2e29663d95506b3500be88b83a8727712c01d74a
--! Hash: sha1:aaff9671e2c11308947cbac0373ae9f4aca60df6
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

create function sessiond.claim_sessions(owner text, ttl_ms integer, max_sessions integer, skip text[] default '{}')
returns setof sessiond.claimed_session
  language sql volatile
as $$
  with candidates as (
    select s.session_key from sessiond.sessions s
     where s.processed_seq < s.last_seq
       and (s.lease_owner is null or s.lease_expires_at <= clock_timestamp())
       and not (s.session_key = any(coalesce(claim_sessions.skip, '{}')))
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
comment on function sessiond.claim_sessions(text, integer, integer, text[]) is
  'The sweep: takes the leases of up to max_sessions sessions that have unprocessed events and no live lease (free or expired), skipping rows other claimers hold and the sessions in skip (those the caller is running itself: claiming one would give it a lease its running loop does not know, which nobody renews or uses until it expires). Returns each with its new fencing token.';

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

-- The processor's two hot statements: one before a session's first run (claim +
-- read), one after each run (read the next events, or release when there are
-- none). Each does in one round trip what used to take two or three.
create type sessiond.session_work as (
  lease_token bigint, id uuid, seq bigint, type text, payload jsonb, request_id text, created_at timestamptz
);
comment on type sessiond.session_work is
  'What claim_session_work and next_session_work return: the caller''s fencing token and one pending event per row, in seq order (the event columns null in next_session_work''s "released" row).';

create function sessiond.claim_session_work(session_key text, owner text, ttl_ms integer, max_events integer)
returns setof sessiond.session_work
  language plpgsql volatile
as $$
#variable_conflict use_column
declare
  _token bigint;
  _processed bigint;
begin
  update sessiond.sessions s
     set lease_owner = claim_session_work.owner,
         lease_token = s.lease_token + 1,
         lease_expires_at = clock_timestamp() + make_interval(secs => ttl_ms / 1000.0),
         updated_at = now()
   where s.session_key = claim_session_work.session_key
     and s.processed_seq < s.last_seq
     and (s.lease_owner is null or s.lease_expires_at <= clock_timestamp())
  returning s.lease_token, s.processed_seq into _token, _processed;
  if not found then
    return;
  end if;
  -- A statement of its own (a volatile function takes a fresh snapshot per statement): it sees
  -- every event up to the last_seq the update above read, also when it waited for an append.
  return query
    select _token, e.id, e.seq, e.type::text, e.payload, e.request_id::text, e.created_at
      from sessiond.events e
     where e.session_key = claim_session_work.session_key and e.seq > _processed
     order by e.seq
     limit greatest(max_events, 1);
end
$$;
comment on function sessiond.claim_session_work(text, text, integer, integer) is
  'Takes the processing lease of a session that has unprocessed events and no live lease, and returns its new fencing token (larger than any before) with its next max_events unprocessed events in seq order. No rows: nothing to do here (no unprocessed event, or another owner holds a live lease); nothing is written then.';

create function sessiond.next_session_work(session_key text, owner text, lease_token bigint, max_events integer)
returns setof sessiond.session_work
  language plpgsql volatile
as $$
#variable_conflict use_column
begin
  -- Release only when nothing is pending. An append in flight holds the sessions row (it raises
  -- last_seq): this update waits for it and then re-checks the condition on the new row, so an
  -- event committed before the release is returned below, and one committed after it notifies a
  -- session whose lease is already free.
  update sessiond.sessions s
     set lease_owner = null, lease_expires_at = null, updated_at = now()
   where s.session_key = next_session_work.session_key
     and s.lease_owner = next_session_work.owner
     and s.lease_token = next_session_work.lease_token
     and s.processed_seq >= s.last_seq;
  if found then
    return query select next_session_work.lease_token, null::uuid, null::bigint, null::text, null::jsonb,
                        null::text, null::timestamptz;
    return;
  end if;
  -- Still held with work pending (read in a fresh snapshot, without writing), or lost: no rows.
  return query
    select s.lease_token, e.id, e.seq, e.type::text, e.payload, e.request_id::text, e.created_at
      from sessiond.sessions s
      join sessiond.events e on e.session_key = s.session_key and e.seq > s.processed_seq
     where s.session_key = next_session_work.session_key
       and s.lease_owner = next_session_work.owner
       and s.lease_token = next_session_work.lease_token
     order by e.seq
     limit greatest(max_events, 1);
end
$$;
comment on function sessiond.next_session_work(text, text, bigint, integer) is
  'What the lease holder (same owner and token) does after a run, in one statement: with unprocessed events, returns the next max_events of them in seq order and keeps the lease (nothing written); with none, releases the lease and returns one row whose event columns are null. No rows: the caller no longer holds the lease.';

create function sessiond.commit_run(
  session_key text,
  lease_token bigint,
  outcomes jsonb,
  effects jsonb,
  checkpoint_rows jsonb default null
) returns setof sessiond.enqueued_effect
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
    if (_outcome->>'seq')::bigint is distinct from _expected then
      raise exception 'sessiond: out-of-order commit on session %: expected event %, got %',
        commit_run.session_key, _expected, _outcome->>'seq'
        using errcode = 'SDO01';
    end if;
    if _expected > _session.last_seq then
      raise exception 'sessiond: commit for event % on session %, which has only % event(s)',
        _expected, commit_run.session_key, _session.last_seq
        using errcode = 'SDO01';
    end if;
    insert into sessiond.event_outcomes (session_key, seq, status, error, attempts, lease_token, started_at)
    values (commit_run.session_key, _expected, coalesce(_outcome->>'status', 'processed'), _outcome->>'error',
            coalesce((_outcome->>'attempts')::integer, 1), commit_run.lease_token,
            (_outcome->>'started_at')::timestamptz);
  end loop;

  update sessiond.sessions s set processed_seq = _expected, updated_at = now()
   where s.session_key = commit_run.session_key;

  if checkpoint_rows is not null then
    perform sessiond.put_checkpoint_rows(checkpoint_rows->'blobs', checkpoint_rows->'checkpoints',
                                         checkpoint_rows->'writes');
  end if;

  if effects is not null and jsonb_typeof(effects) = 'array' and jsonb_array_length(effects) > 0 then
    return query select * from sessiond.enqueue_effects(commit_run.session_key, effects);
  end if;
end
$$;
comment on function sessiond.commit_run(text, bigint, jsonb, jsonb, jsonb) is
  'Commits the outcome of a run in the caller''s transaction: only while lease_token is still the session''s token (else SQLSTATE SDL01, nothing written), only for the next events in order (else SDO01). Records each outcome ([{seq, status, error?, attempts?, started_at?}]), advances processed_seq, writes the run''s checkpoint rows ({blobs, checkpoints, writes} as put_checkpoint_rows takes them; none when null) and enqueues the run''s effects. Called on its own it is the run''s whole transaction: one statement, all of it or nothing.';

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

create function sessiond.put_checkpoint_rows(blobs jsonb, checkpoints jsonb, writes jsonb) returns void
  language sql volatile
as $$
  insert into sessiond.checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
  select r.thread_id, r.checkpoint_ns, r.channel, r.version, r.type, decode(r.blob, 'base64')
    from jsonb_to_recordset(coalesce(put_checkpoint_rows.blobs, '[]'))
         as r(thread_id text, checkpoint_ns text, channel text, version text, type text, blob text)
  on conflict (thread_id, checkpoint_ns, channel, version) do nothing;

  insert into sessiond.checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
  select r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id, r.type, decode(r.checkpoint, 'base64'),
         r.metadata
    from jsonb_to_recordset(coalesce(put_checkpoint_rows.checkpoints, '[]'))
         as r(thread_id text, checkpoint_ns text, checkpoint_id text, parent_checkpoint_id text, type text,
              checkpoint text, metadata jsonb)
  on conflict (thread_id, checkpoint_ns, checkpoint_id) do update
     set parent_checkpoint_id = excluded.parent_checkpoint_id, type = excluded.type,
         checkpoint = excluded.checkpoint, metadata = excluded.metadata;

  insert into sessiond.checkpoint_writes
         (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
  select r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.task_id, r.idx, r.channel, r.type, decode(r.blob, 'base64'),
         r.task_path
    from jsonb_to_recordset(coalesce(put_checkpoint_rows.writes, '[]'))
         as r(thread_id text, checkpoint_ns text, checkpoint_id text, task_id text, idx integer, channel text,
              type text, blob text, task_path text)
  on conflict (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) do update
     set channel = excluded.channel, type = excluded.type, blob = excluded.blob, task_path = excluded.task_path
   where excluded.idx < 0;
$$;
comment on function sessiond.put_checkpoint_rows(jsonb, jsonb, jsonb) is
  'Stores checkpointer rows given as JSON arrays (bytea as base64): blobs are immutable per (thread, ns, channel, version) and kept on conflict; a checkpoint is replaced by id; a pending write is kept, except a special (negative idx) one, which is replaced. A batch must not repeat a key.';
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

-- ============================================================================
-- Audit: views and checks for operators (`sessiond audit`, `sessiond verify`,
-- psql). Nothing here writes.
--
-- Every view is cheap with `where session_key = '…'` (the predicate reaches
-- each branch of a union and each lateral subquery); without one it scans its
-- tables, which is what an operator asking about everything wants. Times are
-- the database's own (now() of the writing transaction), except
-- event_outcomes.started_at, which the processor reports from its own clock.
-- ============================================================================

create function sessiond.stuck_after() returns interval
  language sql stable parallel safe
as $$
  select coalesce(nullif(current_setting('sessiond.stuck_after', true), '')::interval, interval '30 seconds')
$$;
comment on function sessiond.stuck_after() is
  'How long an unprocessed event or an overdue handler effect may wait before sessiond.stuck_work lists it: the setting sessiond.stuck_after (e.g. SET sessiond.stuck_after = ''5 minutes''), 30 seconds by default.';

create function sessiond.duration_ms(from_at timestamptz, to_at timestamptz) returns double precision
  language sql immutable parallel safe
as $$
  select round((extract(epoch from to_at - from_at) * 1000)::numeric, 1)::double precision
$$;
comment on function sessiond.duration_ms(timestamptz, timestamptz) is
  'Milliseconds from from_at to to_at, to 0.1 ms; null when either is null.';

create function sessiond.payload_summary(type text, payload jsonb) returns text
  language sql immutable parallel safe
as $$
  select case when length(_text) > 120 then left(_text, 119) || '…' else _text end
    from (select regexp_replace(coalesce(
            case payload_summary.type
              when 'user_message' then payload->>'text'
              when 'send_message' then payload->>'content'
              when 'error' then concat_ws(': ', payload->>'code', payload->>'message')
              when 'interrupt' then 'asks ' || coalesce(payload->'value', 'null'::jsonb)::text
              when 'resume' then 'answers ' || coalesce(payload->'value', 'null'::jsonb)::text
            end,
            payload::text), '\s+', ' ', 'g') as _text) x
$$;
comment on function sessiond.payload_summary(text, jsonb) is
  'One line (at most 120 characters) saying what an event or effect payload holds: the text of a message, the code and message of an error, else the JSON.';

-- ---------------------------------------------------------------------------
-- session_timeline
-- ---------------------------------------------------------------------------

create view sessiond.session_timeline as
select e.session_key::text as session_key,
       e.created_at as at,
       'event'::text as kind,
       e.seq,
       e.seq as event_seq,
       e.type::text as type,
       coalesce(o.status, case when e.seq <= s.processed_seq then 'no_outcome' else 'pending' end) as status,
       e.request_id::text as request_id,
       null::text as delivery,
       o.attempts,
       sessiond.payload_summary(e.type, e.payload) as summary,
       o.error,
       o.started_at,
       o.finished_at,
       sessiond.duration_ms(e.created_at, o.finished_at) as latency_ms,
       sessiond.duration_ms(o.started_at, o.finished_at) as run_ms
  from sessiond.events e
  left join sessiond.sessions s on s.session_key = e.session_key
  left join sessiond.event_outcomes o on o.session_key = e.session_key and o.seq = e.seq
union all
select f.session_key::text,
       f.created_at,
       'effect'::text,
       f.seq,
       f.event_seq,
       f.type::text,
       f.status,
       f.payload->>'requestId',
       f.delivery,
       f.attempts,
       sessiond.payload_summary(f.type, f.payload),
       f.last_error,
       null::timestamptz,
       f.completed_at,
       sessiond.duration_ms(f.created_at, f.completed_at),
       null::double precision
  from sessiond.effects f;
comment on view sessiond.session_timeline is
  'Events and effects of every session, one row each (kind event|effect), to be read ORDER BY at, kind DESC, seq. at: when the event was appended or the effect enqueued. status: an event''s outcome (processed|failed|superseded), pending before it, no_outcome if processed_seq passed it without one; an effect''s status. event_seq: the event that caused an effect. finished_at: outcome time (events), completion or client ack (effects); latency_ms: at → finished_at; run_ms: run start → outcome (events).';

-- ---------------------------------------------------------------------------
-- effect_backlog
-- ---------------------------------------------------------------------------

create view sessiond.effect_backlog as
select f.status,
       f.type::text as type,
       f.delivery,
       count(*) as effects,
       count(distinct f.session_key) as sessions,
       min(f.created_at) as oldest_at,
       now() - min(f.created_at) as oldest_age,
       sessiond.duration_ms(min(f.created_at), now()) as oldest_age_ms,
       min(f.available_at) filter (where f.status in ('pending', 'failed') and f.delivery = 'handler') as next_due_at,
       max(f.attempts) as max_attempts_used
  from sessiond.effects f
 where f.status <> 'completed'
 group by f.status, f.type, f.delivery;
comment on view sessiond.effect_backlog is
  'Effects not yet completed, by status, type and delivery: how many, in how many sessions, the oldest one''s enqueue time and age, the earliest due time of the handler effects waiting (pending or failed; client effects are due at once), the most attempts any has used.';

-- ---------------------------------------------------------------------------
-- stuck_work
-- ---------------------------------------------------------------------------

create view sessiond.stuck_work as
select 'lease_expired'::text as reason,
       s.session_key::text as session_key,
       'session'::text as kind,
       null::bigint as seq,
       null::text as type,
       s.lease_expires_at as since,
       sessiond.duration_ms(s.lease_expires_at, now()) as age_ms,
       format('lease of %s (token %s) expired with %s unprocessed event(s) (processed %s of %s)',
              s.lease_owner, s.lease_token, s.last_seq - s.processed_seq, s.processed_seq, s.last_seq) as detail
  from sessiond.sessions s
 where s.lease_owner is not null and s.lease_expires_at <= now() and s.processed_seq < s.last_seq
union all
select 'unprocessed_events', s.session_key::text, 'event', e.seq, e.type::text, e.created_at,
       sessiond.duration_ms(e.created_at, now()),
       format('seq %s is the oldest of %s unprocessed event(s); lease: %s',
              e.seq, s.last_seq - s.processed_seq,
              case when s.lease_owner is null then 'none'
                   when s.lease_expires_at > now() then format('held by %s (token %s)', s.lease_owner, s.lease_token)
                   else format('expired (%s, token %s)', s.lease_owner, s.lease_token) end)
  from sessiond.sessions s
  join sessiond.events e on e.session_key = s.session_key and e.seq = s.processed_seq + 1
 where s.processed_seq < s.last_seq and e.created_at <= now() - sessiond.stuck_after()
union all
select 'claim_expired', f.session_key::text, 'effect', f.seq, f.type::text, f.claim_expires_at,
       sessiond.duration_ms(f.claim_expires_at, now()),
       format('executing: claim of %s (attempt %s of %s) expired', f.claimed_by, f.attempts, f.max_attempts)
  from sessiond.effects f
 where f.status = 'executing' and f.claim_expires_at <= now()
union all
select 'effect_overdue', f.session_key::text, 'effect', f.seq, f.type::text, f.available_at,
       sessiond.duration_ms(f.available_at, now()),
       format('pending handler effect due since %s and not claimed (is a runner for %s running?)', f.available_at, f.type)
  from sessiond.effects f
 where f.status = 'pending' and f.delivery = 'handler' and f.available_at <= now() - sessiond.stuck_after()
union all
select 'effect_failed', f.session_key::text, 'effect', f.seq, f.type::text, f.updated_at,
       sessiond.duration_ms(f.updated_at, now()),
       format('attempt %s of %s failed, next at %s: %s', f.attempts, f.max_attempts, f.available_at,
              coalesce(f.last_error, '(no error recorded)'))
  from sessiond.effects f
 where f.status = 'failed'
union all
select 'effect_dead', f.session_key::text, 'effect', f.seq, f.type::text, f.updated_at,
       sessiond.duration_ms(f.updated_at, now()),
       format('dead after %s attempt(s): %s (retry: sessiond effects retry %s)', f.attempts,
              coalesce(f.last_error, '(no error recorded)'), f.id)
  from sessiond.effects f
 where f.status = 'dead';
comment on view sessiond.stuck_work is
  'Work that is not moving, one row per item (reason, session, kind session|event|effect, seq, type, since, age_ms, detail): lease_expired (an expired lease on a session with unprocessed events), unprocessed_events (the oldest unprocessed event has waited longer than sessiond.stuck_after()), claim_expired (an effect executing past its claim), effect_overdue (a pending handler effect due for longer than sessiond.stuck_after()), effect_failed (waiting for a retry), effect_dead.';

-- ---------------------------------------------------------------------------
-- message_latency
-- ---------------------------------------------------------------------------

create view sessiond.message_latency as
select e.session_key::text as session_key,
       e.seq,
       e.request_id::text as request_id,
       coalesce(o.status, 'pending') as status,
       e.created_at as appended_at,
       o.started_at,
       o.finished_at as processed_at,
       r.seq as reply_seq,
       r.type::text as reply_type,
       coalesce(r.seq <= s.acked_seq, false) as acked,
       r.completed_at as acked_at,
       sessiond.duration_ms(e.created_at, o.started_at) as queue_ms,
       sessiond.duration_ms(o.started_at, o.finished_at) as run_ms,
       sessiond.duration_ms(e.created_at, o.finished_at) as processed_ms,
       sessiond.duration_ms(o.finished_at, r.completed_at) as ack_ms,
       sessiond.duration_ms(e.created_at, r.completed_at) as total_ms
  from sessiond.events e
  join sessiond.sessions s on s.session_key = e.session_key
  left join sessiond.event_outcomes o on o.session_key = e.session_key and o.seq = e.seq
  left join lateral (
    select f.seq, f.type, f.completed_at from sessiond.effects f
     where f.session_key = e.session_key and f.event_seq = e.seq and f.delivery = 'client'
       and f.type in ('send_message', 'interrupt', 'error')
     order by f.seq desc
     limit 1) r on true
 where e.type = 'user_message';
comment on view sessiond.message_latency is
  'Per user message: appended_at → started_at (run start) → processed_at (outcome committed, the reply enqueued and pushed to connected clients in the same moment) → acked_at (the client acked the final reply: send_message, interrupt or error), with queue_ms, run_ms, processed_ms (append → outcome), ack_ms (outcome → ack) and total_ms (append → ack). Delivery to a socket is not recorded on its own: the ack is the proof of delivery.';

-- ---------------------------------------------------------------------------
-- session_summary
-- ---------------------------------------------------------------------------

create view sessiond.session_summary as
select s.session_key::text as session_key,
       ev.events,
       ev.user_messages,
       oc.failed,
       oc.superseded,
       ef.effects,
       ef.open_effects,
       ef.dead_effects,
       s.last_seq,
       s.processed_seq,
       s.last_seq - s.processed_seq as unprocessed,
       s.effect_seq,
       s.acked_seq,
       s.effect_seq - s.acked_seq as unacked,
       case when s.lease_owner is null then 'free'
            when s.lease_expires_at > now() then 'held'
            else 'expired' end as lease_state,
       s.lease_owner,
       s.lease_token,
       s.lease_expires_at,
       s.created_at,
       greatest(s.updated_at, ev.last_event_at, oc.last_outcome_at, ef.last_effect_at) as last_activity_at
  from sessiond.sessions s
 cross join lateral (
   select count(*) as events,
          count(*) filter (where e.type = 'user_message') as user_messages,
          max(e.created_at) as last_event_at
     from sessiond.events e where e.session_key = s.session_key) ev
 cross join lateral (
   select count(*) filter (where o.status = 'failed') as failed,
          count(*) filter (where o.status = 'superseded') as superseded,
          max(o.finished_at) as last_outcome_at
     from sessiond.event_outcomes o where o.session_key = s.session_key) oc
 cross join lateral (
   select count(*) as effects,
          count(*) filter (where f.status in ('pending', 'executing', 'failed')) as open_effects,
          count(*) filter (where f.status = 'dead') as dead_effects,
          max(f.updated_at) as last_effect_at
     from sessiond.effects f where f.session_key = s.session_key) ef;
comment on view sessiond.session_summary is
  'One row per session: how many events (user messages among them), failed and superseded outcomes, effects (open: pending, executing or failed; dead); its cursors and what lies between them (unprocessed, unacked); its lease (free|held|expired, owner, token, expiry); when it was created and last changed.';

-- ---------------------------------------------------------------------------
-- verify
-- ---------------------------------------------------------------------------

create function sessiond.verify(stale_after interval default interval '30 seconds')
returns table (check_name text, session_key text, detail text)
  language sql stable
as $$
  with event_stats as (
    select e.session_key, count(*) as n, max(e.seq) as max_seq
      from sessiond.events e group by e.session_key
  ), effect_stats as (
    select f.session_key, count(*) as n, max(f.seq) as max_seq
      from sessiond.effects f group by f.session_key
  ), replies as (
    select f.session_key, f.event_seq,
           count(*) filter (where f.type = 'interrupt'
                              or (f.type = 'send_message' and coalesce((f.payload->>'final')::boolean, true))) as replies,
           count(*) filter (where f.type = 'error') as errors
      from sessiond.effects f where f.event_seq is not null group by f.session_key, f.event_seq
  ), outcome_counts as (
    select o.session_key, o.seq, count(*) as n, min(o.status) as status
      from sessiond.event_outcomes o group by o.session_key, o.seq
  ), violations as (
    select 'event_seq_gap_free' as check_name, coalesce(s.session_key, st.session_key)::text as session_key,
           case when s.session_key is null then format('%s event(s) but no sessions row', st.n)
                else format('last_seq %s, %s event(s), highest seq %s; missing: %s', s.last_seq, coalesce(st.n, 0),
                            coalesce(st.max_seq, 0), coalesce((
                              select string_agg(m.g::text, ', ' order by m.g) from (
                                select g from generate_series(1, greatest(s.last_seq, st.max_seq)) g
                                 where not exists (select 1 from sessiond.events x
                                                    where x.session_key = s.session_key and x.seq = g)
                                 order by g limit 10) m), 'none')) end as detail,
           0::bigint as seq
      from sessiond.sessions s
      full join event_stats st on st.session_key = s.session_key
     where coalesce(s.last_seq, 0) <> coalesce(st.n, 0) or coalesce(s.last_seq, 0) <> coalesce(st.max_seq, 0)
    union all
    select 'processed_not_past_last', s.session_key,
           format('processed_seq %s is past last_seq %s', s.processed_seq, s.last_seq), 0
      from sessiond.sessions s
     where s.processed_seq > s.last_seq
    union all
    select 'one_reply_per_user_event', e.session_key,
           case when oc.status = 'processed'
                then format('user event %s is processed with %s final send_message/interrupt effect(s); expected exactly 1',
                            e.seq, coalesce(r.replies, 0))
                else format('user event %s is %s with %s error effect(s); expected exactly 1',
                            e.seq, oc.status, coalesce(r.errors, 0)) end,
           e.seq
      from sessiond.events e
      join outcome_counts oc on oc.session_key = e.session_key and oc.seq = e.seq
      left join replies r on r.session_key = e.session_key and r.event_seq = e.seq
     where e.type = 'user_message'
       and case when oc.status = 'processed' then coalesce(r.replies, 0) <> 1 else coalesce(r.errors, 0) <> 1 end
    union all
    select 'one_outcome_per_processed_event', e.session_key,
           format('event %s is at or below processed_seq %s but has %s outcome(s)', e.seq, s.processed_seq,
                  coalesce(oc.n, 0)),
           e.seq
      from sessiond.events e
      join sessiond.sessions s on s.session_key = e.session_key
      left join outcome_counts oc on oc.session_key = e.session_key and oc.seq = e.seq
     where e.seq <= s.processed_seq and coalesce(oc.n, 0) <> 1
    union all
    select 'one_outcome_per_processed_event', oc.session_key,
           format('event %s has an outcome (%s) but is past processed_seq %s', oc.seq, oc.status,
                  coalesce(s.processed_seq, 0)),
           oc.seq
      from outcome_counts oc
      left join sessiond.sessions s on s.session_key = oc.session_key
     where oc.seq > coalesce(s.processed_seq, 0)
    union all
    select 'unique_dedupe_key', f.session_key,
           format('dedupe key %s is used by effects %s', f.dedupe_key, string_agg(f.seq::text, ', ' order by f.seq)),
           min(f.seq)
      from sessiond.effects f
     group by f.session_key, f.dedupe_key
    having count(*) > 1
    union all
    select 'effect_seq_gap_free', coalesce(s.session_key, st.session_key)::text,
           case when s.session_key is null then format('%s effect(s) but no sessions row', st.n)
                else format('effect_seq %s, %s effect(s), highest seq %s; missing: %s', s.effect_seq, coalesce(st.n, 0),
                            coalesce(st.max_seq, 0), coalesce((
                              select string_agg(m.g::text, ', ' order by m.g) from (
                                select g from generate_series(1, greatest(s.effect_seq, st.max_seq)) g
                                 where not exists (select 1 from sessiond.effects x
                                                    where x.session_key = s.session_key and x.seq = g)
                                 order by g limit 10) m), 'none')) end,
           0
      from sessiond.sessions s
      full join effect_stats st on st.session_key = s.session_key
     where coalesce(s.effect_seq, 0) <> coalesce(st.n, 0) or coalesce(s.effect_seq, 0) <> coalesce(st.max_seq, 0)
    union all
    select 'acked_not_past_head', s.session_key,
           format('acked_seq %s is past effect_seq %s', s.acked_seq, s.effect_seq), 0
      from sessiond.sessions s
     where s.acked_seq > s.effect_seq
    union all
    select 'lease_not_stale', s.session_key,
           format('lease of %s (token %s) expired at %s, %s s ago, with %s unprocessed event(s)', s.lease_owner,
                  s.lease_token, s.lease_expires_at, round(extract(epoch from now() - s.lease_expires_at), 1),
                  s.last_seq - s.processed_seq),
           0
      from sessiond.sessions s
     where s.lease_owner is not null and s.processed_seq < s.last_seq
       and s.lease_expires_at < now() - verify.stale_after
    union all
    select 'claim_not_stale', f.session_key,
           format('effect %s (%s) executing: claim of %s expired at %s, %s s ago', f.seq, f.type, f.claimed_by,
                  f.claim_expires_at, round(extract(epoch from now() - f.claim_expires_at), 1)),
           f.seq
      from sessiond.effects f
     where f.status = 'executing' and f.claim_expires_at < now() - verify.stale_after
  )
  select v.check_name, v.session_key::text, v.detail
    from violations v
   order by v.check_name, v.session_key, v.seq
$$;
comment on function sessiond.verify(interval) is
  'Checks sessiond''s invariants on the live database and returns one row per violation (check_name, session_key, detail); no rows means healthy. Checks: event_seq_gap_free (events 1..last_seq, no gaps, none beyond), processed_not_past_last, one_reply_per_user_event (a processed user_message has exactly one final send_message or interrupt effect; a failed or superseded one exactly one error effect), one_outcome_per_processed_event (every event up to processed_seq has exactly one outcome, none past it), unique_dedupe_key, effect_seq_gap_free (effects 1..effect_seq), acked_not_past_head, lease_not_stale (no lease on a session with unprocessed events expired longer than stale_after ago), claim_not_stale (no executing effect whose claim expired longer than stale_after ago). Scans every table: run it on a replica or off-peak on a large database.';
