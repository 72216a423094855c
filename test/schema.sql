--
-- Name: sessiond; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA sessiond;

--
-- Name: appended_event; Type: TYPE; Schema: sessiond; Owner: -
--

CREATE TYPE sessiond.appended_event AS (
	id uuid,
	session_key text,
	seq bigint,
	type text,
	payload jsonb,
	request_id text,
	created_at timestamp with time zone,
	duplicate boolean
);

--
-- Name: TYPE appended_event; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TYPE sessiond.appended_event IS 'What append_event returns: the event, and whether it already existed.';

--
-- Name: claimed_session; Type: TYPE; Schema: sessiond; Owner: -
--

CREATE TYPE sessiond.claimed_session AS (
	session_key text,
	lease_token bigint
);

--
-- Name: TYPE claimed_session; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TYPE sessiond.claimed_session IS 'A session whose lease claim_sessions took, with its new fencing token.';

--
-- Name: enqueued_effect; Type: TYPE; Schema: sessiond; Owner: -
--

CREATE TYPE sessiond.enqueued_effect AS (
	id uuid,
	session_key text,
	seq bigint,
	event_seq bigint,
	type text,
	delivery text,
	payload jsonb,
	dedupe_key text,
	status text,
	duplicate boolean
);

--
-- Name: TYPE enqueued_effect; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TYPE sessiond.enqueued_effect IS 'What enqueue_effects returns per effect: the row, and whether its dedupe key already existed.';

--
-- Name: request_id; Type: DOMAIN; Schema: sessiond; Owner: -
--

CREATE DOMAIN sessiond.request_id AS text
	CONSTRAINT request_id_length CHECK (((length(VALUE) >= 1) AND (length(VALUE) <= 200)));

--
-- Name: DOMAIN request_id; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON DOMAIN sessiond.request_id IS 'A client request id (idempotency key): 1..200 characters, stored verbatim.';

--
-- Name: session_key; Type: DOMAIN; Schema: sessiond; Owner: -
--

CREATE DOMAIN sessiond.session_key AS text
	CONSTRAINT session_key_format CHECK ((VALUE ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$'::text));

--
-- Name: DOMAIN session_key; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON DOMAIN sessiond.session_key IS 'A session key: 1..200 characters of [A-Za-z0-9._:@-], starting with a letter or digit (safe in URLs, paths, logs and NOTIFY payloads).';

--
-- Name: session_work; Type: TYPE; Schema: sessiond; Owner: -
--

CREATE TYPE sessiond.session_work AS (
	lease_token bigint,
	id uuid,
	seq bigint,
	type text,
	payload jsonb,
	request_id text,
	created_at timestamp with time zone
);

--
-- Name: TYPE session_work; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TYPE sessiond.session_work IS 'What claim_session_work and next_session_work return: the caller''s fencing token and one pending event per row, in seq order (the event columns null in next_session_work''s "released" row).';

--
-- Name: type_name; Type: DOMAIN; Schema: sessiond; Owner: -
--

CREATE DOMAIN sessiond.type_name AS text
	CONSTRAINT type_name_format CHECK ((VALUE ~ '^[a-z][a-z0-9_.]{0,63}$'::text));

--
-- Name: DOMAIN type_name; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON DOMAIN sessiond.type_name IS 'An event or effect type: lowercase, 1..64 characters of [a-z0-9_.], starting with a letter.';

--
-- Name: ack_effects(text, bigint); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.ack_effects(session_key text, up_to_seq bigint) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
declare
  _head bigint;
  _acked bigint;
begin
  select s.effect_seq, s.acked_seq into _head, _acked from sessiond.sessions s
   where s.session_key = ack_effects.session_key
   for update;
  if not found then
    raise exception 'sessiond: unknown session %', ack_effects.session_key using errcode = '22023';
  end if;
  if up_to_seq < 0 or up_to_seq > _head then
    raise exception 'sessiond: ack of seq % is beyond the session''s effect head %', up_to_seq, _head
      using errcode = '22023';
  end if;
  if up_to_seq <= _acked then
    return _acked;
  end if;
  update sessiond.effects e set status = 'completed'
   where e.session_key = ack_effects.session_key and e.delivery = 'client'
     and e.seq > _acked and e.seq <= up_to_seq and e.status in ('pending', 'executing', 'failed');
  update sessiond.sessions s set acked_seq = up_to_seq, updated_at = now()
   where s.session_key = ack_effects.session_key;
  return up_to_seq;
end
$$;

--
-- Name: FUNCTION ack_effects(session_key text, up_to_seq bigint); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.ack_effects(session_key text, up_to_seq bigint) IS 'A client acknowledges every effect up to up_to_seq: client-delivered effects in (acked_seq, up_to_seq] become completed and acked_seq moves forward (never back). An ack beyond the effect head is rejected (22023). Returns the acked cursor.';

--
-- Name: append_event(text, text, jsonb, text, boolean); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.append_event(session_key text, type text, payload jsonb, request_id text, only_if_idle boolean DEFAULT false) RETURNS SETOF sessiond.appended_event
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
declare
  _event sessiond.events;
  _seq bigint;
begin
  -- Validate before taking the lock, so hostile keys never touch the lock space.
  perform append_event.session_key::sessiond.session_key, append_event.type::sessiond.type_name,
          append_event.request_id::sessiond.request_id;
  perform sessiond.session_lock(append_event.session_key);

  select e.* into _event from sessiond.events e
   where e.session_key = append_event.session_key and e.request_id = append_event.request_id;
  if found then
    return query select _event.id, _event.session_key::text, _event.seq, _event.type::text, _event.payload,
                        _event.request_id::text, _event.created_at, true;
    return;
  end if;

  if only_if_idle and exists (
    select 1 from sessiond.sessions s
     where s.session_key = append_event.session_key and s.processed_seq < s.last_seq) then
    raise exception 'sessiond: session % is busy', append_event.session_key
      using errcode = '55P03', hint = 'The session has unprocessed events; retry later or use the enqueue strategy.';
  end if;

  insert into sessiond.sessions as s (session_key, last_seq)
  values (append_event.session_key, 1)
  on conflict on constraint sessions_pkey
  do update set last_seq = s.last_seq + 1, updated_at = now()
  returning s.last_seq into _seq;

  insert into sessiond.events (session_key, seq, type, payload, request_id)
  values (append_event.session_key, _seq, append_event.type, coalesce(append_event.payload, '{}'::jsonb),
          append_event.request_id)
  returning * into _event;

  return query select _event.id, _event.session_key::text, _event.seq, _event.type::text, _event.payload,
                      _event.request_id::text, _event.created_at, false;
end
$$;

--
-- Name: FUNCTION append_event(session_key text, type text, payload jsonb, request_id text, only_if_idle boolean); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.append_event(session_key text, type text, payload jsonb, request_id text, only_if_idle boolean) IS 'Appends an event under the per-session advisory lock: seq = last_seq + 1 (gap-free, in commit order), the session row created on first use. A repeated (session_key, request_id) returns the existing event with duplicate = true and changes nothing. With only_if_idle, raises 55P03 (busy) when the session has unprocessed events.';

--
-- Name: effects; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.effects (
    session_key sessiond.session_key NOT NULL,
    seq bigint NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    event_seq bigint,
    type sessiond.type_name NOT NULL,
    delivery text DEFAULT 'handler'::text NOT NULL,
    ordered boolean DEFAULT false NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    dedupe_key text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 10 NOT NULL,
    available_at timestamp with time zone DEFAULT now() NOT NULL,
    last_error text,
    claimed_by text,
    claim_expires_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    completed_at timestamp with time zone,
    CONSTRAINT effects_attempts_check CHECK ((attempts >= 0)),
    CONSTRAINT effects_claim_complete CHECK (((claimed_by IS NULL) = (claim_expires_at IS NULL))),
    CONSTRAINT effects_completed_at CHECK (((status = 'completed'::text) = (completed_at IS NOT NULL))),
    CONSTRAINT effects_dedupe_key_check CHECK (((length(dedupe_key) >= 1) AND (length(dedupe_key) <= 500))),
    CONSTRAINT effects_delivery_check CHECK ((delivery = ANY (ARRAY['client'::text, 'handler'::text]))),
    CONSTRAINT effects_event_seq_check CHECK ((event_seq >= 1)),
    CONSTRAINT effects_max_attempts_check CHECK ((max_attempts >= 1)),
    CONSTRAINT effects_payload_object CHECK ((jsonb_typeof(payload) = 'object'::text)),
    CONSTRAINT effects_seq_check CHECK ((seq >= 1)),
    CONSTRAINT effects_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'executing'::text, 'completed'::text, 'failed'::text, 'dead'::text])))
);

--
-- Name: TABLE effects; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.effects IS 'The transactional outbox: what a run decided to do, numbered 1..N per session (the client resume cursor). delivery=client effects complete when a client acks them; delivery=handler effects are run by an effect handler.';

--
-- Name: claim_effects(text, text[], integer, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.claim_effects(owner text, types text[], max_effects integer, claim_ms integer) RETURNS SETOF sessiond.effects
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: FUNCTION claim_effects(owner text, types text[], max_effects integer, claim_ms integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.claim_effects(owner text, types text[], max_effects integer, claim_ms integer) IS 'Claims up to max_effects due handler effects of the given types (pending or failed and due, or executing with an expired claim and attempts left) with FOR UPDATE SKIP LOCKED: no effect is claimed twice at once. Each claim counts an attempt and stores owner in claimed_by (a runner passes a fresh owner per claim, so a handler that outlived its claim cannot complete a later claim). An ordered effect waits until every earlier ordered effect of its session is completed or dead. Marks executing effects whose claim expired after their last attempt as dead.';

--
-- Name: claim_session(text, text, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.claim_session(session_key text, owner text, ttl_ms integer) RETURNS bigint
    LANGUAGE sql
    AS $$
  update sessiond.sessions s
     set lease_owner = claim_session.owner,
         lease_token = s.lease_token + 1,
         lease_expires_at = clock_timestamp() + make_interval(secs => ttl_ms / 1000.0),
         updated_at = now()
   where s.session_key = claim_session.session_key
     and (s.lease_owner is null or s.lease_expires_at <= clock_timestamp())
  returning s.lease_token
$$;

--
-- Name: FUNCTION claim_session(session_key text, owner text, ttl_ms integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.claim_session(session_key text, owner text, ttl_ms integer) IS 'Takes the processing lease of a session if it is free or expired: returns the new fencing token (always larger than any before), or null when another owner holds a live lease.';

--
-- Name: claim_session_work(text, text, integer, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.claim_session_work(session_key text, owner text, ttl_ms integer, max_events integer) RETURNS SETOF sessiond.session_work
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: FUNCTION claim_session_work(session_key text, owner text, ttl_ms integer, max_events integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.claim_session_work(session_key text, owner text, ttl_ms integer, max_events integer) IS 'Takes the processing lease of a session that has unprocessed events and no live lease, and returns its new fencing token (larger than any before) with its next max_events unprocessed events in seq order. No rows: nothing to do here (no unprocessed event, or another owner holds a live lease); nothing is written then.';

--
-- Name: claim_sessions(text, integer, integer, text[]); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.claim_sessions(owner text, ttl_ms integer, max_sessions integer, skip text[] DEFAULT '{}'::text[]) RETURNS SETOF sessiond.claimed_session
    LANGUAGE sql
    AS $$
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

--
-- Name: FUNCTION claim_sessions(owner text, ttl_ms integer, max_sessions integer, skip text[]); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.claim_sessions(owner text, ttl_ms integer, max_sessions integer, skip text[]) IS 'The sweep: takes the leases of up to max_sessions sessions that have unprocessed events and no live lease (free or expired), skipping rows other claimers hold and the sessions in skip (those the caller is running itself: claiming one would give it a lease its running loop does not know, which nobody renews or uses until it expires). Returns each with its new fencing token.';

--
-- Name: commit_run(text, bigint, jsonb, jsonb, jsonb); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.commit_run(session_key text, lease_token bigint, outcomes jsonb, effects jsonb, checkpoint_rows jsonb DEFAULT NULL::jsonb) RETURNS SETOF sessiond.enqueued_effect
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: FUNCTION commit_run(session_key text, lease_token bigint, outcomes jsonb, effects jsonb, checkpoint_rows jsonb); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.commit_run(session_key text, lease_token bigint, outcomes jsonb, effects jsonb, checkpoint_rows jsonb) IS 'Commits the outcome of a run in the caller''s transaction: only while lease_token is still the session''s token (else SQLSTATE SDL01, nothing written), only for the next events in order (else SDO01). Records each outcome ([{seq, status, error?, attempts?, started_at?}]), advances processed_seq, writes the run''s checkpoint rows ({blobs, checkpoints, writes} as put_checkpoint_rows takes them; none when null) and enqueues the run''s effects. Called on its own it is the run''s whole transaction: one statement, all of it or nothing.';

--
-- Name: complete_effect(text, bigint, text); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.complete_effect(session_key text, seq bigint, owner text) RETURNS boolean
    LANGUAGE sql
    AS $$
  with done as (
    update sessiond.effects e set status = 'completed'
     where e.session_key = complete_effect.session_key and e.seq = complete_effect.seq
       and e.status = 'executing' and e.claimed_by = complete_effect.owner
    returning 1
  )
  select exists (select 1 from done)
$$;

--
-- Name: FUNCTION complete_effect(session_key text, seq bigint, owner text); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.complete_effect(session_key text, seq bigint, owner text) IS 'Marks an effect the caller has claimed as completed; false when the claim was lost (another runner reclaimed it).';

--
-- Name: duration_ms(timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.duration_ms(from_at timestamp with time zone, to_at timestamp with time zone) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  select round((extract(epoch from to_at - from_at) * 1000)::numeric, 1)::double precision
$$;

--
-- Name: FUNCTION duration_ms(from_at timestamp with time zone, to_at timestamp with time zone); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.duration_ms(from_at timestamp with time zone, to_at timestamp with time zone) IS 'Milliseconds from from_at to to_at, to 0.1 ms; null when either is null.';

--
-- Name: effect_transition_allowed(text, text); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.effect_transition_allowed(from_status text, to_status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  select from_status = to_status and from_status <> 'completed'
    or (from_status, to_status) in (
      ('pending', 'executing'), ('pending', 'completed'), ('pending', 'dead'),
      ('executing', 'completed'), ('executing', 'failed'), ('executing', 'dead'), ('executing', 'pending'),
      ('failed', 'executing'), ('failed', 'dead'), ('failed', 'pending'), ('failed', 'completed'),
      ('dead', 'pending')
    )
$$;

--
-- Name: FUNCTION effect_transition_allowed(from_status text, to_status text); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.effect_transition_allowed(from_status text, to_status text) IS 'The effect status machine: pending → executing → completed | failed → … → dead; dead → pending only by an operator retry; completed is final.';

--
-- Name: effects_after(text, bigint, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.effects_after(session_key text, after_seq bigint, max_rows integer DEFAULT 1000) RETURNS SETOF sessiond.effects
    LANGUAGE sql STABLE
    AS $$
  select * from sessiond.effects e
   where e.session_key = effects_after.session_key and e.seq > after_seq and e.delivery = 'client'
   order by e.seq
   limit greatest(1, least(max_rows, 10000))
$$;

--
-- Name: FUNCTION effects_after(session_key text, after_seq bigint, max_rows integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.effects_after(session_key text, after_seq bigint, max_rows integer) IS 'The client-delivered effects of a session after a cursor, in seq order (at most max_rows, capped at 10000): what a reconnecting client replays.';

--
-- Name: enqueue_effects(text, jsonb); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.enqueue_effects(session_key text, effects jsonb) RETURNS SETOF sessiond.enqueued_effect
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
declare
  _item jsonb;
  _ordinal integer := 0;
  _dedupe text;
  _existing sessiond.effects;
  _inserted sessiond.effects;
  _seq bigint;
begin
  perform enqueue_effects.session_key::sessiond.session_key;
  if jsonb_typeof(effects) is distinct from 'array' then
    raise exception 'sessiond: effects must be a JSON array' using errcode = '22023';
  end if;
  perform sessiond.session_lock(enqueue_effects.session_key);

  insert into sessiond.sessions (session_key) values (enqueue_effects.session_key)
  on conflict on constraint sessions_pkey do nothing;

  for _item in select value from jsonb_array_elements(effects) loop
    _ordinal := _ordinal + 1;
    _dedupe := coalesce(
      _item->>'dedupe_key',
      format('%s/%s/%s/%s', enqueue_effects.session_key, coalesce(_item->>'event_seq', '-'), _item->>'type', _ordinal));

    select e.* into _existing from sessiond.effects e
     where e.session_key = enqueue_effects.session_key and e.dedupe_key = _dedupe;
    if found then
      return query select _existing.id, _existing.session_key::text, _existing.seq, _existing.event_seq,
                          _existing.type::text, _existing.delivery, _existing.payload, _existing.dedupe_key,
                          _existing.status, true;
      continue;
    end if;

    update sessiond.sessions s set effect_seq = s.effect_seq + 1, updated_at = now()
     where s.session_key = enqueue_effects.session_key
    returning s.effect_seq into _seq;

    insert into sessiond.effects (session_key, seq, event_seq, type, delivery, ordered, payload, dedupe_key,
                                  max_attempts, available_at)
    values (enqueue_effects.session_key, _seq, (_item->>'event_seq')::bigint, _item->>'type',
            coalesce(_item->>'delivery', 'handler'), coalesce((_item->>'ordered')::boolean, false),
            coalesce(_item->'payload', '{}'::jsonb), _dedupe,
            coalesce((_item->>'max_attempts')::integer, 10),
            coalesce((_item->>'available_at')::timestamptz, now()))
    returning * into _inserted;

    return query select _inserted.id, _inserted.session_key::text, _inserted.seq, _inserted.event_seq,
                        _inserted.type::text, _inserted.delivery, _inserted.payload, _inserted.dedupe_key,
                        _inserted.status, false;
  end loop;
end
$$;

--
-- Name: FUNCTION enqueue_effects(session_key text, effects jsonb); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.enqueue_effects(session_key text, effects jsonb) IS 'Enqueues effects ([{type, payload, event_seq?, delivery?, ordered?, dedupe_key?, max_attempts?, available_at?}, …]) under the per-session advisory lock: each new effect gets seq = effect_seq + 1 (gap-free); an effect whose dedupe key (default session/event_seq/type/ordinal) exists is not inserted again and the existing row is returned with duplicate = true.';

--
-- Name: fail_effect(text, bigint, text, text, boolean, integer, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.fail_effect(session_key text, seq bigint, owner text, error text, permanent boolean DEFAULT false, backoff_base_ms integer DEFAULT 1000, backoff_cap_ms integer DEFAULT 300000) RETURNS text
    LANGUAGE sql
    AS $$
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

--
-- Name: FUNCTION fail_effect(session_key text, seq bigint, owner text, error text, permanent boolean, backoff_base_ms integer, backoff_cap_ms integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.fail_effect(session_key text, seq bigint, owner text, error text, permanent boolean, backoff_base_ms integer, backoff_cap_ms integer) IS 'Records a failed attempt of an effect the caller has claimed: failed, due again after an exponential backoff with jitter (base·2^(attempts−1), capped, times 0.5..1), or dead when permanent or out of attempts. Returns the new status, or null when the claim was lost.';

--
-- Name: heartbeat_session(text, text, bigint, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.heartbeat_session(session_key text, owner text, lease_token bigint, ttl_ms integer) RETURNS boolean
    LANGUAGE sql
    AS $$
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

--
-- Name: FUNCTION heartbeat_session(session_key text, owner text, lease_token bigint, ttl_ms integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.heartbeat_session(session_key text, owner text, lease_token bigint, ttl_ms integer) IS 'Extends a lease the caller still holds (same owner and token); false when the lease was lost.';

--
-- Name: list_effects(text, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.list_effects(status text DEFAULT NULL::text, max_rows integer DEFAULT 100) RETURNS SETOF sessiond.effects
    LANGUAGE sql STABLE
    AS $$
  select * from sessiond.effects e
   where list_effects.status is null or e.status = list_effects.status
   order by e.updated_at desc
   limit greatest(1, least(max_rows, 10000))
$$;

--
-- Name: FUNCTION list_effects(status text, max_rows integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.list_effects(status text, max_rows integer) IS 'Effects by status (all when null), most recently changed first.';

--
-- Name: max_payload_bytes(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.max_payload_bytes() RETURNS integer
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select coalesce(nullif(current_setting('sessiond.max_payload_bytes', true), '')::integer, 65536)
$$;

--
-- Name: FUNCTION max_payload_bytes(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.max_payload_bytes() IS 'The payload size ceiling in bytes for events and effects: the setting sessiond.max_payload_bytes (e.g. ALTER DATABASE … SET sessiond.max_payload_bytes = 131072), 65536 by default.';

--
-- Name: next_session_work(text, text, bigint, integer); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.next_session_work(session_key text, owner text, lease_token bigint, max_events integer) RETURNS SETOF sessiond.session_work
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: FUNCTION next_session_work(session_key text, owner text, lease_token bigint, max_events integer); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.next_session_work(session_key text, owner text, lease_token bigint, max_events integer) IS 'What the lease holder (same owner and token) does after a run, in one statement: with unprocessed events, returns the next max_events of them in seq order and keeps the lease (nothing written); with none, releases the lease and returns one row whose event columns are null. No rows: the caller no longer holds the lease.';

--
-- Name: notify_payload(jsonb); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.notify_payload(pairs jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  select case when octet_length(pairs::text) <= 4000 then pairs::text else '' end
$$;

--
-- Name: FUNCTION notify_payload(pairs jsonb); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.notify_payload(pairs jsonb) IS 'The NOTIFY payload for a set of [session_key, seq] pairs: the JSON text if it is at most 4000 bytes, else empty (meaning: sweep).';

--
-- Name: payload_summary(text, jsonb); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.payload_summary(type text, payload jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
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

--
-- Name: FUNCTION payload_summary(type text, payload jsonb); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.payload_summary(type text, payload jsonb) IS 'One line (at most 120 characters) saying what an event or effect payload holds: the text of a message, the code and message of an error, else the JSON.';

--
-- Name: put_checkpoint_rows(jsonb, jsonb, jsonb); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.put_checkpoint_rows(blobs jsonb, checkpoints jsonb, writes jsonb) RETURNS void
    LANGUAGE sql
    AS $$
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

--
-- Name: FUNCTION put_checkpoint_rows(blobs jsonb, checkpoints jsonb, writes jsonb); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.put_checkpoint_rows(blobs jsonb, checkpoints jsonb, writes jsonb) IS 'Stores checkpointer rows given as JSON arrays (bytea as base64): blobs are immutable per (thread, ns, channel, version) and kept on conflict; a checkpoint is replaced by id; a pending write is kept, except a special (negative idx) one, which is replaced. A batch must not repeat a key.';

--
-- Name: release_session(text, text, bigint); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.release_session(session_key text, owner text, lease_token bigint) RETURNS boolean
    LANGUAGE sql
    AS $$
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

--
-- Name: FUNCTION release_session(session_key text, owner text, lease_token bigint); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.release_session(session_key text, owner text, lease_token bigint) IS 'Gives a lease back (same owner and token) so another processor may claim the session at once; false when it was not held.';

--
-- Name: retry_effect(uuid); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.retry_effect(id uuid) RETURNS sessiond.effects
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: FUNCTION retry_effect(id uuid); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.retry_effect(id uuid) IS 'An operator''s retry: a dead or failed effect becomes pending with its attempts reset, and runners are notified.';

--
-- Name: session_lock(text); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.session_lock(session_key text) RETURNS void
    LANGUAGE sql
    AS $$
  -- Two-key form: classid 0x5e55 namespaces sessiond's locks away from other applications.
  select pg_advisory_xact_lock(24149, hashtext(session_key))
$$;

--
-- Name: FUNCTION session_lock(session_key text); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.session_lock(session_key text) IS 'Takes the per-session transaction-scoped advisory lock that serialises every writer of a session''s seq counters.';

--
-- Name: stuck_after(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.stuck_after() RETURNS interval
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select coalesce(nullif(current_setting('sessiond.stuck_after', true), '')::interval, interval '30 seconds')
$$;

--
-- Name: FUNCTION stuck_after(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.stuck_after() IS 'How long an unprocessed event or an overdue handler effect may wait before sessiond.stuck_work lists it: the setting sessiond.stuck_after (e.g. SET sessiond.stuck_after = ''5 minutes''), 30 seconds by default.';

--
-- Name: tg_effects__before_update(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.tg_effects__before_update() RETURNS trigger
    LANGUAGE plpgsql STABLE
    AS $$
begin
  if (new.session_key, new.seq, new.id, new.event_seq, new.type, new.delivery, new.ordered, new.payload, new.dedupe_key, new.created_at)
     is distinct from
     (old.session_key, old.seq, old.id, old.event_seq, old.type, old.delivery, old.ordered, old.payload, old.dedupe_key, old.created_at) then
    raise exception 'sessiond: an effect''s identity and payload are immutable (session %, seq %)', old.session_key, old.seq
      using errcode = '55000';
  end if;
  if not sessiond.effect_transition_allowed(old.status, new.status) then
    raise exception 'sessiond: illegal effect transition % -> % (session %, seq %)', old.status, new.status, old.session_key, old.seq
      using errcode = '55000';
  end if;
  new.updated_at := now();
  if new.status = 'completed' and old.status <> 'completed' then
    new.completed_at := now();
  elsif new.status <> 'completed' then
    new.completed_at := null;
  end if;
  if new.status <> 'executing' then
    new.claimed_by := null;
    new.claim_expires_at := null;
  end if;
  return new;
end
$$;

--
-- Name: FUNCTION tg_effects__before_update(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.tg_effects__before_update() IS 'Enforces the effect status machine and the immutability of an effect''s identity and payload; keeps updated_at, completed_at and the claim columns consistent.';

--
-- Name: tg_effects__notify(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.tg_effects__notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
  if exists (select 1 from new_rows) then
    perform pg_notify('sessiond_effects', sessiond.notify_payload(
      (select jsonb_agg(jsonb_build_array(k, s)) from (
         select n.session_key::text as k, max(n.seq) as s from new_rows n group by n.session_key) x)));
  end if;
  return null;
end
$$;

--
-- Name: FUNCTION tg_effects__notify(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.tg_effects__notify() IS 'After each INSERT statement on effects that inserted rows: one NOTIFY sessiond_effects with [[session_key, max_seq], …]; delivered only if the transaction commits.';

--
-- Name: tg_events__immutable(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.tg_events__immutable() RETURNS trigger
    LANGUAGE plpgsql IMMUTABLE
    AS $$
begin
  raise exception 'sessiond: events are immutable (session %, seq %)', old.session_key, old.seq
    using errcode = '55000';
end
$$;

--
-- Name: FUNCTION tg_events__immutable(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.tg_events__immutable() IS 'Rejects every UPDATE of an event: an appended event never changes.';

--
-- Name: tg_events__notify(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.tg_events__notify() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
  perform pg_notify('sessiond_events', sessiond.notify_payload(
    (select jsonb_agg(jsonb_build_array(k, s)) from (
       select n.session_key::text as k, max(n.seq) as s from new_rows n group by n.session_key) x)));
  return null;
end
$$;

--
-- Name: FUNCTION tg_events__notify(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.tg_events__notify() IS 'After each INSERT statement on events: one NOTIFY sessiond_events with [[session_key, max_seq], …]; delivered only if the transaction commits.';

--
-- Name: tg_payload__check_size(); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.tg_payload__check_size() RETURNS trigger
    LANGUAGE plpgsql STABLE
    AS $$
declare
  _size integer := octet_length(new.payload::text);
  _max integer := sessiond.max_payload_bytes();
begin
  if _size > _max then
    raise exception 'sessiond: % payload is % bytes, over the limit of % bytes', tg_table_name, _size, _max
      using errcode = '54000', hint = 'Raise sessiond.max_payload_bytes or send less.';
  end if;
  return new;
end
$$;

--
-- Name: FUNCTION tg_payload__check_size(); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.tg_payload__check_size() IS 'Rejects an event or effect whose payload exceeds sessiond.max_payload_bytes() (SQLSTATE 54000).';

--
-- Name: verify(interval); Type: FUNCTION; Schema: sessiond; Owner: -
--

CREATE FUNCTION sessiond.verify(stale_after interval DEFAULT '00:00:30'::interval) RETURNS TABLE(check_name text, session_key text, detail text)
    LANGUAGE sql STABLE
    AS $$
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

--
-- Name: FUNCTION verify(stale_after interval); Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON FUNCTION sessiond.verify(stale_after interval) IS 'Checks sessiond''s invariants on the live database and returns one row per violation (check_name, session_key, detail); no rows means healthy. Checks: event_seq_gap_free (events 1..last_seq, no gaps, none beyond), processed_not_past_last, one_reply_per_user_event (a processed user_message has exactly one final send_message or interrupt effect; a failed or superseded one exactly one error effect), one_outcome_per_processed_event (every event up to processed_seq has exactly one outcome, none past it), unique_dedupe_key, effect_seq_gap_free (effects 1..effect_seq), acked_not_past_head, lease_not_stale (no lease on a session with unprocessed events expired longer than stale_after ago), claim_not_stale (no executing effect whose claim expired longer than stale_after ago). Scans every table: run it on a replica or off-peak on a large database.';

--
-- Name: checkpoint_blobs; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.checkpoint_blobs (
    thread_id text NOT NULL,
    checkpoint_ns text DEFAULT ''::text NOT NULL,
    channel text NOT NULL,
    version text NOT NULL,
    type text NOT NULL,
    blob bytea
);

--
-- Name: TABLE checkpoint_blobs; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.checkpoint_blobs IS 'LangGraph channel values, one row per channel version.';

--
-- Name: checkpoint_writes; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.checkpoint_writes (
    thread_id text NOT NULL,
    checkpoint_ns text DEFAULT ''::text NOT NULL,
    checkpoint_id text NOT NULL,
    task_id text NOT NULL,
    idx integer NOT NULL,
    channel text NOT NULL,
    type text,
    blob bytea NOT NULL,
    task_path text DEFAULT ''::text NOT NULL
);

--
-- Name: TABLE checkpoint_writes; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.checkpoint_writes IS 'LangGraph pending writes of tasks, per checkpoint.';

--
-- Name: checkpoints; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.checkpoints (
    thread_id text NOT NULL,
    checkpoint_ns text DEFAULT ''::text NOT NULL,
    checkpoint_id text NOT NULL,
    parent_checkpoint_id text,
    type text,
    checkpoint bytea NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT checkpoints_thread_id_check CHECK (((length(thread_id) >= 1) AND (length(thread_id) <= 200)))
);

--
-- Name: TABLE checkpoints; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.checkpoints IS 'LangGraph checkpoints (serialised without channel values), one per step, per thread (= session key) and namespace.';

--
-- Name: effect_backlog; Type: VIEW; Schema: sessiond; Owner: -
--

CREATE VIEW sessiond.effect_backlog AS
 SELECT f.status,
    (f.type)::text AS type,
    f.delivery,
    count(*) AS effects,
    count(DISTINCT f.session_key) AS sessions,
    min(f.created_at) AS oldest_at,
    (now() - min(f.created_at)) AS oldest_age,
    sessiond.duration_ms(min(f.created_at), now()) AS oldest_age_ms,
    min(f.available_at) FILTER (WHERE ((f.status = ANY (ARRAY['pending'::text, 'failed'::text])) AND (f.delivery = 'handler'::text))) AS next_due_at,
    max(f.attempts) AS max_attempts_used
   FROM sessiond.effects f
  WHERE (f.status <> 'completed'::text)
  GROUP BY f.status, f.type, f.delivery;

--
-- Name: VIEW effect_backlog; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON VIEW sessiond.effect_backlog IS 'Effects not yet completed, by status, type and delivery: how many, in how many sessions, the oldest one''s enqueue time and age, the earliest due time of the handler effects waiting (pending or failed; client effects are due at once), the most attempts any has used.';

--
-- Name: event_outcomes; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.event_outcomes (
    session_key sessiond.session_key NOT NULL,
    seq bigint NOT NULL,
    status text NOT NULL,
    error text,
    attempts integer DEFAULT 1 NOT NULL,
    lease_token bigint NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT event_outcomes_attempts_check CHECK ((attempts >= 1)),
    CONSTRAINT event_outcomes_lease_token_check CHECK ((lease_token >= 0)),
    CONSTRAINT event_outcomes_seq_check CHECK ((seq >= 1)),
    CONSTRAINT event_outcomes_status_check CHECK ((status = ANY (ARRAY['processed'::text, 'failed'::text, 'superseded'::text]))),
    CONSTRAINT failed_has_error CHECK (((status = 'failed'::text) = (error IS NOT NULL)))
);

--
-- Name: TABLE event_outcomes; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.event_outcomes IS 'How each event ended, written in the same transaction that advances processed_seq: processed, failed (with the error) or superseded (aborted by a newer message).';

--
-- Name: events; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.events (
    session_key sessiond.session_key NOT NULL,
    seq bigint NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    type sessiond.type_name NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    request_id sessiond.request_id NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT events_payload_object CHECK ((jsonb_typeof(payload) = 'object'::text)),
    CONSTRAINT events_seq_check CHECK ((seq >= 1))
);

--
-- Name: TABLE events; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.events IS 'Immutable inputs of a session, numbered 1..N without gaps per session in commit order; one row per (session_key, request_id).';

--
-- Name: sessions; Type: TABLE; Schema: sessiond; Owner: -
--

CREATE TABLE sessiond.sessions (
    session_key sessiond.session_key NOT NULL,
    last_seq bigint DEFAULT 0 NOT NULL,
    processed_seq bigint DEFAULT 0 NOT NULL,
    effect_seq bigint DEFAULT 0 NOT NULL,
    acked_seq bigint DEFAULT 0 NOT NULL,
    lease_owner text,
    lease_token bigint DEFAULT 0 NOT NULL,
    lease_expires_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT acked_not_past_head CHECK ((acked_seq <= effect_seq)),
    CONSTRAINT lease_complete CHECK (((lease_owner IS NULL) = (lease_expires_at IS NULL))),
    CONSTRAINT processed_not_past_last CHECK ((processed_seq <= last_seq)),
    CONSTRAINT sessions_acked_seq_check CHECK ((acked_seq >= 0)),
    CONSTRAINT sessions_effect_seq_check CHECK ((effect_seq >= 0)),
    CONSTRAINT sessions_last_seq_check CHECK ((last_seq >= 0)),
    CONSTRAINT sessions_lease_owner_check CHECK (((length(lease_owner) >= 1) AND (length(lease_owner) <= 200))),
    CONSTRAINT sessions_lease_token_check CHECK ((lease_token >= 0)),
    CONSTRAINT sessions_processed_seq_check CHECK ((processed_seq >= 0))
);

--
-- Name: TABLE sessions; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON TABLE sessiond.sessions IS 'One row per session: its cursors (last_seq, processed_seq, effect_seq, acked_seq) and its processing lease (owner, fencing token, expiry).';

--
-- Name: message_latency; Type: VIEW; Schema: sessiond; Owner: -
--

CREATE VIEW sessiond.message_latency AS
 SELECT (e.session_key)::text AS session_key,
    e.seq,
    (e.request_id)::text AS request_id,
    COALESCE(o.status, 'pending'::text) AS status,
    e.created_at AS appended_at,
    o.started_at,
    o.finished_at AS processed_at,
    r.seq AS reply_seq,
    (r.type)::text AS reply_type,
    COALESCE((r.seq <= s.acked_seq), false) AS acked,
    r.completed_at AS acked_at,
    sessiond.duration_ms(e.created_at, o.started_at) AS queue_ms,
    sessiond.duration_ms(o.started_at, o.finished_at) AS run_ms,
    sessiond.duration_ms(e.created_at, o.finished_at) AS processed_ms,
    sessiond.duration_ms(o.finished_at, r.completed_at) AS ack_ms,
    sessiond.duration_ms(e.created_at, r.completed_at) AS total_ms
   FROM (((sessiond.events e
     JOIN sessiond.sessions s ON (((s.session_key)::text = (e.session_key)::text)))
     LEFT JOIN sessiond.event_outcomes o ON ((((o.session_key)::text = (e.session_key)::text) AND (o.seq = e.seq))))
     LEFT JOIN LATERAL ( SELECT f.seq,
            f.type,
            f.completed_at
           FROM sessiond.effects f
          WHERE (((f.session_key)::text = (e.session_key)::text) AND (f.event_seq = e.seq) AND (f.delivery = 'client'::text) AND ((f.type)::text = ANY (ARRAY['send_message'::text, 'interrupt'::text, 'error'::text])))
          ORDER BY f.seq DESC
         LIMIT 1) r ON (true))
  WHERE ((e.type)::text = 'user_message'::text);

--
-- Name: VIEW message_latency; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON VIEW sessiond.message_latency IS 'Per user message: appended_at → started_at (run start) → processed_at (outcome committed, the reply enqueued and pushed to connected clients in the same moment) → acked_at (the client acked the final reply: send_message, interrupt or error), with queue_ms, run_ms, processed_ms (append → outcome), ack_ms (outcome → ack) and total_ms (append → ack). Delivery to a socket is not recorded on its own: the ack is the proof of delivery.';

--
-- Name: session_summary; Type: VIEW; Schema: sessiond; Owner: -
--

CREATE VIEW sessiond.session_summary AS
 SELECT (s.session_key)::text AS session_key,
    ev.events,
    ev.user_messages,
    oc.failed,
    oc.superseded,
    ef.effects,
    ef.open_effects,
    ef.dead_effects,
    s.last_seq,
    s.processed_seq,
    (s.last_seq - s.processed_seq) AS unprocessed,
    s.effect_seq,
    s.acked_seq,
    (s.effect_seq - s.acked_seq) AS unacked,
        CASE
            WHEN (s.lease_owner IS NULL) THEN 'free'::text
            WHEN (s.lease_expires_at > now()) THEN 'held'::text
            ELSE 'expired'::text
        END AS lease_state,
    s.lease_owner,
    s.lease_token,
    s.lease_expires_at,
    s.created_at,
    GREATEST(s.updated_at, ev.last_event_at, oc.last_outcome_at, ef.last_effect_at) AS last_activity_at
   FROM (((sessiond.sessions s
     CROSS JOIN LATERAL ( SELECT count(*) AS events,
            count(*) FILTER (WHERE ((e.type)::text = 'user_message'::text)) AS user_messages,
            max(e.created_at) AS last_event_at
           FROM sessiond.events e
          WHERE ((e.session_key)::text = (s.session_key)::text)) ev)
     CROSS JOIN LATERAL ( SELECT count(*) FILTER (WHERE (o.status = 'failed'::text)) AS failed,
            count(*) FILTER (WHERE (o.status = 'superseded'::text)) AS superseded,
            max(o.finished_at) AS last_outcome_at
           FROM sessiond.event_outcomes o
          WHERE ((o.session_key)::text = (s.session_key)::text)) oc)
     CROSS JOIN LATERAL ( SELECT count(*) AS effects,
            count(*) FILTER (WHERE (f.status = ANY (ARRAY['pending'::text, 'executing'::text, 'failed'::text]))) AS open_effects,
            count(*) FILTER (WHERE (f.status = 'dead'::text)) AS dead_effects,
            max(f.updated_at) AS last_effect_at
           FROM sessiond.effects f
          WHERE ((f.session_key)::text = (s.session_key)::text)) ef);

--
-- Name: VIEW session_summary; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON VIEW sessiond.session_summary IS 'One row per session: how many events (user messages among them), failed and superseded outcomes, effects (open: pending, executing or failed; dead); its cursors and what lies between them (unprocessed, unacked); its lease (free|held|expired, owner, token, expiry); when it was created and last changed.';

--
-- Name: session_timeline; Type: VIEW; Schema: sessiond; Owner: -
--

CREATE VIEW sessiond.session_timeline AS
 SELECT (e.session_key)::text AS session_key,
    e.created_at AS at,
    'event'::text AS kind,
    e.seq,
    e.seq AS event_seq,
    (e.type)::text AS type,
    COALESCE(o.status,
        CASE
            WHEN (e.seq <= s.processed_seq) THEN 'no_outcome'::text
            ELSE 'pending'::text
        END) AS status,
    (e.request_id)::text AS request_id,
    NULL::text AS delivery,
    o.attempts,
    sessiond.payload_summary((e.type)::text, e.payload) AS summary,
    o.error,
    o.started_at,
    o.finished_at,
    sessiond.duration_ms(e.created_at, o.finished_at) AS latency_ms,
    sessiond.duration_ms(o.started_at, o.finished_at) AS run_ms
   FROM ((sessiond.events e
     LEFT JOIN sessiond.sessions s ON (((s.session_key)::text = (e.session_key)::text)))
     LEFT JOIN sessiond.event_outcomes o ON ((((o.session_key)::text = (e.session_key)::text) AND (o.seq = e.seq))))
UNION ALL
 SELECT (f.session_key)::text AS session_key,
    f.created_at AS at,
    'effect'::text AS kind,
    f.seq,
    f.event_seq,
    (f.type)::text AS type,
    f.status,
    (f.payload ->> 'requestId'::text) AS request_id,
    f.delivery,
    f.attempts,
    sessiond.payload_summary((f.type)::text, f.payload) AS summary,
    f.last_error AS error,
    NULL::timestamp with time zone AS started_at,
    f.completed_at AS finished_at,
    sessiond.duration_ms(f.created_at, f.completed_at) AS latency_ms,
    NULL::double precision AS run_ms
   FROM sessiond.effects f;

--
-- Name: VIEW session_timeline; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON VIEW sessiond.session_timeline IS 'Events and effects of every session, one row each (kind event|effect), to be read ORDER BY at, kind DESC, seq. at: when the event was appended or the effect enqueued. status: an event''s outcome (processed|failed|superseded), pending before it, no_outcome if processed_seq passed it without one; an effect''s status. event_seq: the event that caused an effect. finished_at: outcome time (events), completion or client ack (effects); latency_ms: at → finished_at; run_ms: run start → outcome (events).';

--
-- Name: stuck_work; Type: VIEW; Schema: sessiond; Owner: -
--

CREATE VIEW sessiond.stuck_work AS
 SELECT 'lease_expired'::text AS reason,
    (s.session_key)::text AS session_key,
    'session'::text AS kind,
    NULL::bigint AS seq,
    NULL::text AS type,
    s.lease_expires_at AS since,
    sessiond.duration_ms(s.lease_expires_at, now()) AS age_ms,
    format('lease of %s (token %s) expired with %s unprocessed event(s) (processed %s of %s)'::text, s.lease_owner, s.lease_token, (s.last_seq - s.processed_seq), s.processed_seq, s.last_seq) AS detail
   FROM sessiond.sessions s
  WHERE ((s.lease_owner IS NOT NULL) AND (s.lease_expires_at <= now()) AND (s.processed_seq < s.last_seq))
UNION ALL
 SELECT 'unprocessed_events'::text AS reason,
    (s.session_key)::text AS session_key,
    'event'::text AS kind,
    e.seq,
    (e.type)::text AS type,
    e.created_at AS since,
    sessiond.duration_ms(e.created_at, now()) AS age_ms,
    format('seq %s is the oldest of %s unprocessed event(s); lease: %s'::text, e.seq, (s.last_seq - s.processed_seq),
        CASE
            WHEN (s.lease_owner IS NULL) THEN 'none'::text
            WHEN (s.lease_expires_at > now()) THEN format('held by %s (token %s)'::text, s.lease_owner, s.lease_token)
            ELSE format('expired (%s, token %s)'::text, s.lease_owner, s.lease_token)
        END) AS detail
   FROM (sessiond.sessions s
     JOIN sessiond.events e ON ((((e.session_key)::text = (s.session_key)::text) AND (e.seq = (s.processed_seq + 1)))))
  WHERE ((s.processed_seq < s.last_seq) AND (e.created_at <= (now() - sessiond.stuck_after())))
UNION ALL
 SELECT 'claim_expired'::text AS reason,
    (f.session_key)::text AS session_key,
    'effect'::text AS kind,
    f.seq,
    (f.type)::text AS type,
    f.claim_expires_at AS since,
    sessiond.duration_ms(f.claim_expires_at, now()) AS age_ms,
    format('executing: claim of %s (attempt %s of %s) expired'::text, f.claimed_by, f.attempts, f.max_attempts) AS detail
   FROM sessiond.effects f
  WHERE ((f.status = 'executing'::text) AND (f.claim_expires_at <= now()))
UNION ALL
 SELECT 'effect_overdue'::text AS reason,
    (f.session_key)::text AS session_key,
    'effect'::text AS kind,
    f.seq,
    (f.type)::text AS type,
    f.available_at AS since,
    sessiond.duration_ms(f.available_at, now()) AS age_ms,
    format('pending handler effect due since %s and not claimed (is a runner for %s running?)'::text, f.available_at, f.type) AS detail
   FROM sessiond.effects f
  WHERE ((f.status = 'pending'::text) AND (f.delivery = 'handler'::text) AND (f.available_at <= (now() - sessiond.stuck_after())))
UNION ALL
 SELECT 'effect_failed'::text AS reason,
    (f.session_key)::text AS session_key,
    'effect'::text AS kind,
    f.seq,
    (f.type)::text AS type,
    f.updated_at AS since,
    sessiond.duration_ms(f.updated_at, now()) AS age_ms,
    format('attempt %s of %s failed, next at %s: %s'::text, f.attempts, f.max_attempts, f.available_at, COALESCE(f.last_error, '(no error recorded)'::text)) AS detail
   FROM sessiond.effects f
  WHERE (f.status = 'failed'::text)
UNION ALL
 SELECT 'effect_dead'::text AS reason,
    (f.session_key)::text AS session_key,
    'effect'::text AS kind,
    f.seq,
    (f.type)::text AS type,
    f.updated_at AS since,
    sessiond.duration_ms(f.updated_at, now()) AS age_ms,
    format('dead after %s attempt(s): %s (retry: sessiond effects retry %s)'::text, f.attempts, COALESCE(f.last_error, '(no error recorded)'::text), f.id) AS detail
   FROM sessiond.effects f
  WHERE (f.status = 'dead'::text);

--
-- Name: VIEW stuck_work; Type: COMMENT; Schema: sessiond; Owner: -
--

COMMENT ON VIEW sessiond.stuck_work IS 'Work that is not moving, one row per item (reason, session, kind session|event|effect, seq, type, since, age_ms, detail): lease_expired (an expired lease on a session with unprocessed events), unprocessed_events (the oldest unprocessed event has waited longer than sessiond.stuck_after()), claim_expired (an effect executing past its claim), effect_overdue (a pending handler effect due for longer than sessiond.stuck_after()), effect_failed (waiting for a retry), effect_dead.';

--
-- Name: checkpoint_blobs checkpoint_blobs_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.checkpoint_blobs
    ADD CONSTRAINT checkpoint_blobs_pkey PRIMARY KEY (thread_id, checkpoint_ns, channel, version);

--
-- Name: checkpoint_writes checkpoint_writes_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.checkpoint_writes
    ADD CONSTRAINT checkpoint_writes_pkey PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx);

--
-- Name: checkpoints checkpoints_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.checkpoints
    ADD CONSTRAINT checkpoints_pkey PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id);

--
-- Name: effects effects_dedupe_key_unique; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.effects
    ADD CONSTRAINT effects_dedupe_key_unique UNIQUE (session_key, dedupe_key);

--
-- Name: effects effects_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.effects
    ADD CONSTRAINT effects_pkey PRIMARY KEY (session_key, seq);

--
-- Name: event_outcomes event_outcomes_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.event_outcomes
    ADD CONSTRAINT event_outcomes_pkey PRIMARY KEY (session_key, seq);

--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (session_key, seq);

--
-- Name: events events_request_id_unique; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.events
    ADD CONSTRAINT events_request_id_unique UNIQUE (session_key, request_id);

--
-- Name: sessions sessions_pkey; Type: CONSTRAINT; Schema: sessiond; Owner: -
--

ALTER TABLE ONLY sessiond.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (session_key);

--
-- Name: effects_due_idx; Type: INDEX; Schema: sessiond; Owner: -
--

CREATE INDEX effects_due_idx ON sessiond.effects USING btree (available_at) WHERE ((status = ANY (ARRAY['pending'::text, 'failed'::text])) AND (delivery = 'handler'::text));

--
-- Name: effects_executing_idx; Type: INDEX; Schema: sessiond; Owner: -
--

CREATE INDEX effects_executing_idx ON sessiond.effects USING btree (claim_expires_at) WHERE (status = 'executing'::text);

--
-- Name: effects_id_idx; Type: INDEX; Schema: sessiond; Owner: -
--

CREATE INDEX effects_id_idx ON sessiond.effects USING btree (id);

--
-- Name: events_id_idx; Type: INDEX; Schema: sessiond; Owner: -
--

CREATE INDEX events_id_idx ON sessiond.events USING btree (id);

--
-- Name: sessions_unprocessed_idx; Type: INDEX; Schema: sessiond; Owner: -
--

CREATE INDEX sessions_unprocessed_idx ON sessiond.sessions USING btree (session_key) WHERE (processed_seq < last_seq);

--
-- Name: events _100_immutable; Type: TRIGGER; Schema: sessiond; Owner: -
--

CREATE TRIGGER _100_immutable BEFORE UPDATE ON sessiond.events FOR EACH ROW EXECUTE FUNCTION sessiond.tg_events__immutable();

--
-- Name: effects _100_payload_size; Type: TRIGGER; Schema: sessiond; Owner: -
--

CREATE TRIGGER _100_payload_size BEFORE INSERT ON sessiond.effects FOR EACH ROW EXECUTE FUNCTION sessiond.tg_payload__check_size();

--
-- Name: events _100_payload_size; Type: TRIGGER; Schema: sessiond; Owner: -
--

CREATE TRIGGER _100_payload_size BEFORE INSERT ON sessiond.events FOR EACH ROW EXECUTE FUNCTION sessiond.tg_payload__check_size();

--
-- Name: effects _200_status_machine; Type: TRIGGER; Schema: sessiond; Owner: -
--

CREATE TRIGGER _200_status_machine BEFORE UPDATE ON sessiond.effects FOR EACH ROW EXECUTE FUNCTION sessiond.tg_effects__before_update();

--
-- Name: effects _900_notify; Type: TRIGGER; Schema: sessiond; Owner: -
--

CREATE TRIGGER _900_notify AFTER INSERT ON sessiond.effects REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sessiond.tg_effects__notify();

--
-- Name: events _900_notify; Type: TRIGGER; Schema: sessiond; Owner: -
--

CREATE TRIGGER _900_notify AFTER INSERT ON sessiond.events REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sessiond.tg_events__notify();
