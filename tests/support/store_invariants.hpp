// Test support: what must hold in every committed state of a store that only mqsec's Store
// wrote, whatever it ran (any mix of sends, claims, deliveries, removals, moves, purges,
// transactions, and owners killed at any point). Rows a test writes with raw SQL (an orphan
// claim, a priority of 8, a made-up owner string) may break them on purpose: the store
// tolerates those, so do not run the check after such a test. For the row layout of schema
// versions 6 and 7 (src/transport/local/store.cpp); a new layout must bring its own checks
// (docs/design/segment-store.md §10.6, stage 0).
//
// Read through a connection of its own, in one read transaction (one snapshot), so it may run
// while other processes use the store. Checked:
//   - every claim names a message that is there, in the queue the claim names (a claim that
//     outlives its message or follows it into another queue: a release, a move or an apply
//     that forgot it);
//   - every claim's owner is a string mqsec writes (claim_owner.hpp);
//   - every message, delivered or arrived id, signer and security descriptor belongs to a queue
//     that exists (a delete or a concurrent send that left rows behind);
//   - every message's priority is an integer 0..7 (mqsec writes no other);
//   - SQLite's own integrity check.
// Not an invariant, so not checked: that no message in a queue has an id recorded as delivered
// from it (a copy appended again is stored, and refused as a replay when received), nor that
// no two messages carry the same envelope.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace mqsec::testing {

// One line per broken invariant (what, how many rows, one of them); empty when all hold, or one
// line saying why the database could not be read.
std::vector<std::string> store_invariant_violations(const std::filesystem::path& store_dir);

}  // namespace mqsec::testing
