//! Integration tests: the real binary against an in-process mock of `POST /v4/hash` on
//! 127.0.0.1. One test binary (`tests/integration/`), grouped by topic.

mod util;

mod archives;
mod baseline;
mod budget;
mod cache;
mod ecs;
mod faults;
mod filesystem;
mod firstday;
mod gateway;
mod hash_cmd;
mod hashsets;
mod interrupt;
mod livesys;
mod lookup_cmd;
mod lookups;
mod msrv;
mod nsrl;
mod packaging;
mod parsers;
mod readme;
mod report;
mod review;
mod scan;
mod secrecy;
mod shell;
mod throttling;
