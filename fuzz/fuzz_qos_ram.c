/* libFuzzer harness for the words a spec hands the ram driver and the qos
 * layer: td_ram_parse (tapdisk/drivers/ram_spec.c), td_qos_limits_parse /
 * td_qos_limits_format (tapdisk/qos/limits.c) and td_parse_size
 * (tapdisk/core/util.c). A hostile spec reaches them through tap-ctl
 * create, unpause -a and the control command "qos KEY=VALUE,...".
 *
 * Input: one mode byte (its value modulo 3: ram, qos, size), then the
 * string. Every refusal must say why and leave the output as it was
 * (qos); whatever parses must be in range: a RAM disk a non-zero multiple
 * of 4 KiB at most TD_RAM_MAX_SIZE with a valid name, QoS limits within
 * TD_TB_MAX and a weight within 1..TD_QOS_WEIGHT_MAX, and the limits
 * formatted as words parse back to the same limits. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapdisk/core/util.h"
#include "tapdisk/drivers/ram.h"
#include "tapdisk/qos/bucket.h"
#include "tapdisk/qos/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ram(const char *s)
{
	struct td_ram_spec r;
	char err[512] = "";

	if (td_ram_parse(s, &r, err, sizeof(err)) < 0) {
		assert(err[0]);
		return;
	}
	assert(r.size > 0 && r.size % 4096 == 0 && r.size <= TD_RAM_MAX_SIZE);
	assert(strlen(r.name) <= TD_SHM_NAME_MAX);
	assert(!strchr(r.name, '/') && strcmp(r.name, ".") && strcmp(r.name, ".."));
	assert(r.name[0] || !r.group[0]); /* shm= only for a named one */
	assert(!strchr(r.group, '/') && !strchr(r.group, ','));
}

static void check_qos(const char *s)
{
	struct td_qos_limits q, before, again;
	char err[512] = "", words[1024];

	td_qos_limits_default(&q);
	before = q;
	if (td_qos_limits_parse(s, &q, err, sizeof(err)) < 0) {
		assert(err[0]);
		assert(!memcmp(&q, &before, sizeof(q)));
		return;
	}
	for (int d = 0; d < TD_QOS_NDIR; d++)
		assert(q.iops[d] <= TD_TB_MAX && q.bps[d] <= TD_TB_MAX &&
		       q.iops_burst[d] <= TD_TB_MAX && q.bps_burst[d] <= TD_TB_MAX);
	assert(q.weight >= 1 && q.weight <= TD_QOS_WEIGHT_MAX);
	assert(td_qos_limits_format(&q, "", ",", 0, words, sizeof(words)) == 0);
	td_qos_limits_default(&again);
	assert(td_qos_limits_parse(words, &again, err, sizeof(err)) == 0);
	assert(!memcmp(&q, &again, sizeof(q)));
}

static void check_size(const char *s)
{
	uint64_t v = 12345;
	int rc = td_parse_size(s, &v);

	assert(rc == 0 || rc == -EINVAL || rc == -ERANGE);
	if (rc < 0)
		assert(v == 12345); /* untouched */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	switch (data[0] % 3) {
	case 0:
		check_ram(s);
		break;
	case 1:
		check_qos(s);
		break;
	default:
		check_size(s);
	}
	free(s);
	return 0;
}
