// plan_id_maps: the text written to /proc/PID/{uid_map,gid_map,setgroups}.
#include "sandbox/userns.hpp"

#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "sandbox/uid_slots.hpp"

using namespace nsbox;

namespace {

struct MapLine {
  uint64_t inside, outside, count;
};

// Parses a single-line map; fails the test on anything else.
MapLine parse_single_line(const std::string& map) {
  REQUIRE(!map.empty());
  REQUIRE(map.back() == '\n');
  REQUIRE(map.find('\n') == map.size() - 1);
  std::istringstream in(map);
  MapLine l{};
  REQUIRE(bool(in >> l.inside >> l.outside >> l.count));
  return l;
}

// Host id of `inside` under a single-line map, or -1 when unmapped.
int64_t host_id(const std::string& map, uint64_t inside) {
  MapLine l = parse_single_line(map);
  if (inside < l.inside || inside >= l.inside + l.count) return -1;
  return static_cast<int64_t>(l.outside + (inside - l.inside));
}

}  // namespace

TEST_CASE("plan_id_maps: rootless maps only the sandbox user onto the caller") {
  IdMap ids;
  ids.rootless = true;
  ids.host_uid = 1234;
  ids.host_gid = 5678;
  IdMapText t = plan_id_maps(ids);
  CHECK(t.uid_map == "1000 1234 1\n");
  CHECK(t.gid_map == "1000 5678 1\n");
  CHECK(t.setgroups == "deny");
  // Inside root is not mapped at all.
  CHECK(host_id(t.uid_map, 0) == -1);
}

TEST_CASE("plan_id_maps: rootless follows inside_uid/inside_gid") {
  IdMap ids;
  ids.rootless = true;
  ids.inside_uid = 500;
  ids.inside_gid = 501;
  ids.host_uid = 1000;
  ids.host_gid = 1001;
  IdMapText t = plan_id_maps(ids);
  CHECK(t.uid_map == "500 1000 1\n");
  CHECK(t.gid_map == "501 1001 1\n");
}

TEST_CASE("plan_id_maps: root mode maps a uid slot's range, distinct per slot") {
  IdMap a, b;
  a.host_base = kSlotUidBase + 3 * kSlotUids;
  b.host_base = kSlotUidBase + 4 * kSlotUids;
  IdMapText ta = plan_id_maps(a), tb = plan_id_maps(b);
  CHECK(host_id(ta.uid_map, 1000) == int64_t{0x70003000} + 1000);
  CHECK(host_id(tb.uid_map, 1000) == int64_t{0x70004000} + 1000);
  // Ranges do not overlap: the last uid of one is below the first of the next.
  CHECK(host_id(ta.uid_map, 4095) < host_id(tb.uid_map, 0));
  CHECK(host_id(ta.uid_map, 4095) == host_id(tb.uid_map, 0) - 1);
}

TEST_CASE("plan_id_maps: root mode maps 4096 ids onto host_base") {
  IdMap ids;  // defaults: root mode, host_base 0x70000000
  IdMapText t = plan_id_maps(ids);
  CHECK(t.uid_map == "0 " + std::to_string(0x70000000u) + " 4096\n");
  CHECK(t.gid_map == "0 " + std::to_string(0x70000000u) + " 4096\n");
  CHECK(t.setgroups == "allow");

  ids.host_base = 100000;
  t = plan_id_maps(ids);
  CHECK(t.uid_map == "0 100000 4096\n");
  CHECK(t.gid_map == "0 100000 4096\n");
}

TEST_CASE("plan_id_maps: in root mode the sandbox user is never host root") {
  IdMap ids;
  ids.host_uid = 0;  // the caller is root
  ids.host_gid = 0;
  IdMapText t = plan_id_maps(ids);
  CHECK(host_id(t.uid_map, ids.inside_uid) == int64_t{0x70000000} + 1000);
  CHECK(host_id(t.gid_map, ids.inside_gid) == int64_t{0x70000000} + 1000);
  // No inside id at all maps onto host 0.
  MapLine u = parse_single_line(t.uid_map);
  CHECK(u.outside > 0);
  MapLine g = parse_single_line(t.gid_map);
  CHECK(g.outside > 0);
  // The mapped range stays within 32-bit ids and below (uid_t)-1.
  CHECK(u.outside + u.count - 1 < 0xffffffffull);
}
