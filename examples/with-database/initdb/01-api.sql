-- Run by the postgres image once, on the first start with an empty volume;
-- later changes to the schema are migrations, not edits of this file.
create schema api;

create table api.notes (
    id      bigint generated always as identity primary key,
    body    text not null,
    created timestamptz not null default now()
);

insert into api.notes (body) values ('Written by initdb/01-api.sql on the first start.');

-- Requests to the web service run as web_anon, which may read the notes and
-- nothing else.
create role web_anon nologin;
grant usage on schema api to web_anon;
grant select on api.notes to web_anon;
