--! Previous: -
--! Hash: sha1:2e29663d95506b3500be88b83a8727712c01d74a

-- ============================================================================
-- sessiond core schema.
--
-- Every guarantee sessiond gives lives here, in a constraint, a trigger or a
-- function; TypeScript calls these functions in one line each.
--
--   events   immutable, per-session gap-free seq, idempotent by request_id
--   effects  transactional outbox, per-session gap-free seq, dedupe_key,
--            status machine enforced by trigger
--   sessions cursors (last_seq, processed_seq, effect_seq, acked_seq) and
--            the processing lease (owner, fencing token, expiry)
--
-- Every table's primary and unique keys start with session_key and no foreign
-- key crosses sessions, so the schema can be distributed by session_key.
-- ============================================================================

create schema if not exists sessiond;

-- ---------------------------------------------------------------------------
-- Domains for what hostile input could break.
-- ---------------------------------------------------------------------------

create domain sessiond.session_key as text
  constraint session_key_format check (value ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$');
comment on domain sessiond.session_key is
  'A session key: 1..200 characters of [A-Za-z0-9._:@-], starting with a letter or digit (safe in URLs, paths, logs and NOTIFY payloads).';

create domain sessiond.type_name as text
  constraint type_name_format check (value ~ '^[a-z][a-z0-9_.]{0,63}$');
comment on domain sessiond.type_name is
  'An event or effect type: lowercase, 1..64 characters of [a-z0-9_.], starting with a letter.';

create domain sessiond.request_id as text
  constraint request_id_length check (length(value) between 1 and 200);
comment on domain sessiond.request_id is
  'A client request id (idempotency key): 1..200 characters, stored verbatim.';

-- ---------------------------------------------------------------------------
-- Configuration read by the database itself.
-- ---------------------------------------------------------------------------

create function sessiond.max_payload_bytes() returns integer
  language sql stable parallel safe
as $$
  select coalesce(nullif(current_setting('sessiond.max_payload_bytes', true), '')::integer, 65536)
$$;
comment on function sessiond.max_payload_bytes() is
  'The payload size ceiling in bytes for events and effects: the setting sessiond.max_payload_bytes (e.g. ALTER DATABASE … SET sessiond.max_payload_bytes = 131072), 65536 by default.';

create function sessiond.session_lock(session_key text) returns void
  language sql volatile
as $$
  -- Two-key form: classid 0x5e55 namespaces sessiond's locks away from other applications.
  select pg_advisory_xact_lock(24149, hashtext(session_key))
$$;
comment on function sessiond.session_lock(text) is
  'Takes the per-session transaction-scoped advisory lock that serialises every writer of a session''s seq counters.';

-- ---------------------------------------------------------------------------
-- Tables.
-- ---------------------------------------------------------------------------

create table sessiond.sessions (
  session_key sessiond.session_key primary key,
  last_seq bigint not null default 0 check (last_seq >= 0),
  processed_seq bigint not null default 0 check (processed_seq >= 0),
  effect_seq bigint not null default 0 check (effect_seq >= 0),
  acked_seq bigint not null default 0 check (acked_seq >= 0),
  lease_owner text check (length(lease_owner) between 1 and 200),
  lease_token bigint not null default 0 check (lease_token >= 0),
  lease_expires_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint processed_not_past_last check (processed_seq <= last_seq),
  constraint acked_not_past_head check (acked_seq <= effect_seq),
  constraint lease_complete check ((lease_owner is null) = (lease_expires_at is null))
);
comment on table sessiond.sessions is
  'One row per session: its cursors (last_seq, processed_seq, effect_seq, acked_seq) and its processing lease (owner, fencing token, expiry).';

create table sessiond.events (
  session_key sessiond.session_key not null,
  seq bigint not null check (seq >= 1),
  id uuid not null default gen_random_uuid(),
  type sessiond.type_name not null,
  payload jsonb not null default '{}'::jsonb,
  request_id sessiond.request_id not null,
  created_at timestamptz not null default now(),
  primary key (session_key, seq),
  constraint events_request_id_unique unique (session_key, request_id),
  constraint events_payload_object check (jsonb_typeof(payload) = 'object')
);
comment on table sessiond.events is
  'Immutable inputs of a session, numbered 1..N without gaps per session in commit order; one row per (session_key, request_id).';

create index events_id_idx on sessiond.events (id);

create table sessiond.event_outcomes (
  session_key sessiond.session_key not null,
  seq bigint not null check (seq >= 1),
  status text not null check (status in ('processed', 'failed', 'superseded')),
  error text,
  attempts integer not null default 1 check (attempts >= 1),
  lease_token bigint not null check (lease_token >= 0),
  started_at timestamptz,
  finished_at timestamptz not null default now(),
  primary key (session_key, seq),
  constraint failed_has_error check ((status = 'failed') = (error is not null))
);
comment on table sessiond.event_outcomes is
  'How each event ended, written in the same transaction that advances processed_seq: processed, failed (with the error) or superseded (aborted by a newer message).';

create table sessiond.effects (
  session_key sessiond.session_key not null,
  seq bigint not null check (seq >= 1),
  id uuid not null default gen_random_uuid(),
  event_seq bigint check (event_seq >= 1),
  type sessiond.type_name not null,
  delivery text not null default 'handler' check (delivery in ('client', 'handler')),
  ordered boolean not null default false,
  payload jsonb not null default '{}'::jsonb,
  dedupe_key text not null check (length(dedupe_key) between 1 and 500),
  status text not null default 'pending'
    check (status in ('pending', 'executing', 'completed', 'failed', 'dead')),
  attempts integer not null default 0 check (attempts >= 0),
  max_attempts integer not null default 10 check (max_attempts >= 1),
  available_at timestamptz not null default now(),
  last_error text,
  claimed_by text,
  claim_expires_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  primary key (session_key, seq),
  constraint effects_dedupe_key_unique unique (session_key, dedupe_key),
  constraint effects_payload_object check (jsonb_typeof(payload) = 'object'),
  constraint effects_claim_complete check ((claimed_by is null) = (claim_expires_at is null)),
  constraint effects_completed_at check ((status = 'completed') = (completed_at is not null))
);
comment on table sessiond.effects is
  'The transactional outbox: what a run decided to do, numbered 1..N per session (the client resume cursor). delivery=client effects complete when a client acks them; delivery=handler effects are run by an effect handler.';

create index effects_id_idx on sessiond.effects (id);
create index effects_due_idx on sessiond.effects (available_at)
  where status in ('pending', 'failed') and delivery = 'handler';
create index effects_executing_idx on sessiond.effects (claim_expires_at) where status = 'executing';
create index sessions_unprocessed_idx on sessiond.sessions (session_key) where processed_seq < last_seq;

-- ---------------------------------------------------------------------------
-- Triggers: payload ceiling, immutability, status machine, NOTIFY.
-- ---------------------------------------------------------------------------

create function sessiond.tg_payload__check_size() returns trigger
  language plpgsql stable
as $$
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
comment on function sessiond.tg_payload__check_size() is
  'Rejects an event or effect whose payload exceeds sessiond.max_payload_bytes() (SQLSTATE 54000).';

create trigger _100_payload_size before insert on sessiond.events
  for each row execute function sessiond.tg_payload__check_size();
create trigger _100_payload_size before insert on sessiond.effects
  for each row execute function sessiond.tg_payload__check_size();

create function sessiond.tg_events__immutable() returns trigger
  language plpgsql immutable
as $$
begin
  raise exception 'sessiond: events are immutable (session %, seq %)', old.session_key, old.seq
    using errcode = '55000';
end
$$;
comment on function sessiond.tg_events__immutable() is
  'Rejects every UPDATE of an event: an appended event never changes.';

create trigger _100_immutable before update on sessiond.events
  for each row execute function sessiond.tg_events__immutable();

create function sessiond.effect_transition_allowed(from_status text, to_status text) returns boolean
  language sql immutable parallel safe
as $$
  select from_status = to_status and from_status <> 'completed'
    or (from_status, to_status) in (
      ('pending', 'executing'), ('pending', 'completed'), ('pending', 'dead'),
      ('executing', 'completed'), ('executing', 'failed'), ('executing', 'dead'), ('executing', 'pending'),
      ('failed', 'executing'), ('failed', 'dead'), ('failed', 'pending'), ('failed', 'completed'),
      ('dead', 'pending')
    )
$$;
comment on function sessiond.effect_transition_allowed(text, text) is
  'The effect status machine: pending → executing → completed | failed → … → dead; dead → pending only by an operator retry; completed is final.';

create function sessiond.tg_effects__before_update() returns trigger
  language plpgsql stable
as $$
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
comment on function sessiond.tg_effects__before_update() is
  'Enforces the effect status machine and the immutability of an effect''s identity and payload; keeps updated_at, completed_at and the claim columns consistent.';

create trigger _200_status_machine before update on sessiond.effects
  for each row execute function sessiond.tg_effects__before_update();

-- NOTIFY once per statement, with ids only: a JSON array of [session_key, max seq]
-- pairs. If that would not fit comfortably in a notification, the payload is
-- empty, which listeners treat as "sweep everything".
create function sessiond.notify_payload(pairs jsonb) returns text
  language sql immutable parallel safe
as $$
  select case when octet_length(pairs::text) <= 4000 then pairs::text else '' end
$$;
comment on function sessiond.notify_payload(jsonb) is
  'The NOTIFY payload for a set of [session_key, seq] pairs: the JSON text if it is at most 4000 bytes, else empty (meaning: sweep).';

create function sessiond.tg_events__notify() returns trigger
  language plpgsql volatile
as $$
begin
  perform pg_notify('sessiond_events', sessiond.notify_payload(
    (select jsonb_agg(jsonb_build_array(k, s)) from (
       select n.session_key::text as k, max(n.seq) as s from new_rows n group by n.session_key) x)));
  return null;
end
$$;
comment on function sessiond.tg_events__notify() is
  'After each INSERT statement on events: one NOTIFY sessiond_events with [[session_key, max_seq], …]; delivered only if the transaction commits.';

create trigger _900_notify after insert on sessiond.events
  referencing new table as new_rows
  for each statement execute function sessiond.tg_events__notify();

create function sessiond.tg_effects__notify() returns trigger
  language plpgsql volatile
as $$
begin
  if exists (select 1 from new_rows) then
    perform pg_notify('sessiond_effects', sessiond.notify_payload(
      (select jsonb_agg(jsonb_build_array(k, s)) from (
         select n.session_key::text as k, max(n.seq) as s from new_rows n group by n.session_key) x)));
  end if;
  return null;
end
$$;
comment on function sessiond.tg_effects__notify() is
  'After each INSERT statement on effects that inserted rows: one NOTIFY sessiond_effects with [[session_key, max_seq], …]; delivered only if the transaction commits.';

create trigger _900_notify after insert on sessiond.effects
  referencing new table as new_rows
  for each statement execute function sessiond.tg_effects__notify();

-- ---------------------------------------------------------------------------
-- Appending events.
-- ---------------------------------------------------------------------------

create type sessiond.appended_event as (
  id uuid, session_key text, seq bigint, type text, payload jsonb, request_id text,
  created_at timestamptz, duplicate boolean
);
comment on type sessiond.appended_event is 'What append_event returns: the event, and whether it already existed.';

create function sessiond.append_event(
  session_key text,
  type text,
  payload jsonb,
  request_id text,
  only_if_idle boolean default false
) returns setof sessiond.appended_event
  language plpgsql volatile
as $$
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
comment on function sessiond.append_event(text, text, jsonb, text, boolean) is
  'Appends an event under the per-session advisory lock: seq = last_seq + 1 (gap-free, in commit order), the session row created on first use. A repeated (session_key, request_id) returns the existing event with duplicate = true and changes nothing. With only_if_idle, raises 55P03 (busy) when the session has unprocessed events.';

-- ---------------------------------------------------------------------------
-- Enqueueing effects.
-- ---------------------------------------------------------------------------

create type sessiond.enqueued_effect as (
  id uuid, session_key text, seq bigint, event_seq bigint, type text, delivery text, payload jsonb,
  dedupe_key text, status text, duplicate boolean
);
comment on type sessiond.enqueued_effect is 'What enqueue_effects returns per effect: the row, and whether its dedupe key already existed.';

create function sessiond.enqueue_effects(session_key text, effects jsonb)
returns setof sessiond.enqueued_effect
  language plpgsql volatile
as $$
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
comment on function sessiond.enqueue_effects(text, jsonb) is
  'Enqueues effects ([{type, payload, event_seq?, delivery?, ordered?, dedupe_key?, max_attempts?, available_at?}, …]) under the per-session advisory lock: each new effect gets seq = effect_seq + 1 (gap-free); an effect whose dedupe key (default session/event_seq/type/ordinal) exists is not inserted again and the existing row is returned with duplicate = true.';

-- ---------------------------------------------------------------------------
-- Client delivery: acknowledgements.
-- ---------------------------------------------------------------------------

create function sessiond.ack_effects(session_key text, up_to_seq bigint) returns bigint
  language plpgsql volatile
as $$
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
comment on function sessiond.ack_effects(text, bigint) is
  'A client acknowledges every effect up to up_to_seq: client-delivered effects in (acked_seq, up_to_seq] become completed and acked_seq moves forward (never back). An ack beyond the effect head is rejected (22023). Returns the acked cursor.';

create function sessiond.effects_after(session_key text, after_seq bigint, max_rows integer default 1000)
returns setof sessiond.effects
  language sql stable
as $$
  select * from sessiond.effects e
   where e.session_key = effects_after.session_key and e.seq > after_seq and e.delivery = 'client'
   order by e.seq
   limit greatest(1, least(max_rows, 10000))
$$;
comment on function sessiond.effects_after(text, bigint, integer) is
  'The client-delivered effects of a session after a cursor, in seq order (at most max_rows, capped at 10000): what a reconnecting client replays.';
