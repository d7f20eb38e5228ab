/*
 * rtpload: G.711 RTP load through a media relay, with loss and latency.
 *
 *   rtpload -f ENDPOINTS [-R ramp_s] [-w warmup_s] [-d duration_s] [-g drain_ms]
 *           [-p NAME=PID]... [-o RESULT] [-Q SIDE] [-F SIDE]
 *
 * ENDPOINTS has one line per local RTP endpoint (two per call, caller and
 * callee side), written by setup_calls.py from the SDP the server sent:
 *
 *   LOCAL_PORT  RELAY_IP  RELAY_PORT  [SIDE]
 *
 * Every endpoint binds 127.0.0.1:LOCAL_PORT and sends 20 ms G.711 packets
 * (12-byte RTP header + 160 bytes payload = 172 bytes, 50 packets/s) to its
 * relay address; the relay forwards them to the other party of the call,
 * i.e. to some other endpoint of the file. rtpload does not need to know the
 * pairing: each payload carries the sender's index, a sequence number, a
 * "counted" flag and the send time, so whichever socket receives it can
 * account for it. (It does check that all packets of one sender arrive at
 * the same socket: "misrouted" counts those that do not.)
 *
 * Timeline: the endpoints start one after the other over the ramp (their 20 ms
 * phases are spread evenly, so the load is smooth), then warmup seconds of
 * traffic are not counted, then duration seconds are counted, then sending
 * stops and arrivals are awaited for drain_ms. A counted packet that has not
 * arrived by then is lost.
 *
 * Latency = the kernel's receive timestamp of the datagram (SO_TIMESTAMPNS,
 * taken when the relay's sendto() hands it to loopback) - the send time
 * written into the payload just before this program's sendto(): what the relay
 * adds (its wake-up, queueing and processing) plus two trips through the
 * loopback stack (a few microseconds: run it without a relay to see them),
 * without this program's own delays on the receive side. Each socket is read
 * right after its own send (one recvmmsg per packet, no epoll: every socket
 * receives 50 packets/s too), so reading up to 20 ms late changes nothing.
 * Send lateness (how late sends left against the 20 ms schedule) tells whether
 * the generator itself kept up: if its p99 is above 1 ms the generator was
 * the bottleneck, not the relay.
 *
 * -Q SIDE: endpoints of that side (the 4th column) only receive, never send
 * (the callee of a call whose caller hears a prompt the relay plays).
 *
 * -F SIDE: also account for RTP streams the server itself sends (an IVR
 * prompt, an announcement, rtpengine's "play media"): packets without this
 * program's payload marker. Per receiving socket it follows one SSRC and
 * counts, in the counted window (by kernel receive time), the packets, the
 * sequence numbers missing, SSRC changes and the inter-arrival times;
 * RTCP (payload types 64-95) is counted apart. Endpoints of SIDE are the
 * ones expected to receive such a stream: "stream_silent" counts those that
 * got none in the window. Output keys stream_*.
 *
 * -T PID: that process's CPU over the counted window split by thread name
 * (/proc/PID/task/TID/schedstat: ns on the CPU; stat's ticks if absent; threads of one name summed, e.g. the tokio
 * workers; per thread, so a thread ending in the window is missed, one
 * starting in it counted from its start): keys thr_NAME_pct, NAME with anything but letters and digits
 * made '_'.
 *
 * -p NAME=PID (repeatable): CPU of that process (utime+stime of all its
 * threads, /proc/PID/stat) over the counted window, as % of one core.
 *
 * Output: one line of KEY=VALUE on stdout (and in RESULT if -o), a readable
 * summary on stderr. Exit status 0 if it ran (whatever the loss), 2 on usage
 * or setup errors.
 *
 * Build: gcc -O2 -Wall -o rtpload rtpload.c   (Linux)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PKT_LEN 172
#define RTP_HDR 12
#define PERIOD_NS 20000000LL /* 20 ms */
#define MAGIC 0x52544c44u    /* "RTLD" */
#define HIST_US 200000       /* 1 us buckets up to 200 ms, then one overflow bucket */
#define MAX_EP 65536
#define MAX_PROCS 16

struct ep {
	int fd;
	uint16_t port;
	struct sockaddr_in dst;
	char side;
	uint32_t seq;          /* next sequence number to send */
	uint32_t sent_counted; /* counted packets sent */
	uint32_t recv_counted; /* counted packets of this sender received (unique) */
	uint32_t recv_all;     /* all packets of this sender received */
	int32_t first_rx;      /* index of the endpoint that received its first packet */
	uint8_t *seen;         /* bitmap of received sequence numbers */
	int quiet;             /* -Q: receive only */
	/* -F: the stream the server sends to this socket */
	int f_have;
	uint32_t f_ssrc;
	uint16_t f_seq;
	int64_t f_kts;         /* kernel receive time of the last one (realtime ns) */
	uint32_t f_win;        /* packets received in the counted window */
	uint32_t f_gaps;       /* sequence numbers missing (in the window) */
	uint32_t f_ssrc_changes, f_dup, f_reorder;
};

static struct ep *eps;
static int nep;
static uint32_t max_seq;
static uint64_t hist_relay[HIST_US + 1], hist_late[HIST_US + 1];
static uint64_t n_relay, n_late;
static uint64_t dup_pkts, misrouted, bad_pkts, foreign_pkts, send_errors, no_tstamp;
static volatile sig_atomic_t stop_now;
static int foreign_mode;             /* -F */
static char foreign_side;            /* endpoints expected to receive a server stream */
static int64_t win0_rt, win1_rt;     /* counted window, CLOCK_REALTIME ns (kernel timestamps) */
static uint64_t hist_ia[HIST_US + 1], n_ia, f_rtcp, f_bad;

static void on_signal(int sig) { (void)sig; stop_now = 1; }

static int64_t ts_ns(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void hist_add(uint64_t *h, uint64_t *n, int64_t ns)
{
	int64_t us = ns / 1000;
	if (us < 0)
		us = 0;
	if (us > HIST_US)
		us = HIST_US;
	h[us]++;
	(*n)++;
}

/* p-th percentile (nearest rank) in microseconds; HIST_US means "over 200 ms". */
static double hist_pct(const uint64_t *h, uint64_t n, double p)
{
	if (n == 0)
		return -1;
	uint64_t rank = (uint64_t)(n * p / 100.0 + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t acc = 0;
	for (int i = 0; i <= HIST_US; i++) {
		acc += h[i];
		if (acc >= rank)
			return i;
	}
	return HIST_US;
}

static double hist_max(const uint64_t *h)
{
	for (int i = HIST_US; i >= 0; i--)
		if (h[i])
			return i;
	return -1;
}

static double hist_mean(const uint64_t *h, uint64_t n)
{
	if (!n)
		return -1;
	double s = 0;
	for (int i = 0; i <= HIST_US; i++)
		s += (double)h[i] * i;
	return s / n;
}

static long long proc_ticks(int pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2; /* fields from 3 (state) on */
	unsigned long long ut = 0, st = 0;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
	if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* -T: CPU ticks per thread name of one process */
#define MAX_TGROUPS 64
static int thr_pid;
static char tg_name[MAX_TGROUPS][24];
static long long tg_cpu[MAX_TGROUPS]; /* ns on the CPU in the window */
static int n_tg;
/* Per thread at the window's start: a thread that started in the window
 * counts from 0; one that ended in it is missed (its time is not lost from
 * the others, as a per-name sum of the two edges would do). */
#define MAX_TIDS 4096
static int tid0[MAX_TIDS];
static long long ns0[MAX_TIDS];
static int n_tid0;

static int tgroup(const char *name)
{
	for (int i = 0; i < n_tg; i++)
		if (!strcmp(tg_name[i], name))
			return i;
	if (n_tg == MAX_TGROUPS)
		return -1;
	snprintf(tg_name[n_tg], sizeof tg_name[n_tg], "%s", name);
	return n_tg++;
}

static void thread_ticks(int end)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", thr_pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char sp[300], buf[4096];
		snprintf(sp, sizeof sp, "/proc/%d/task/%s/stat", thr_pid, de->d_name);
		int fd = open(sp, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t r = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = 0;
		char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
		if (!lp || !rp || rp < lp)
			continue;
		char name[24];
		int k = 0;
		for (char *c = lp + 1; c < rp && k < 23; c++)
			name[k++] = ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')) ? *c : '_';
		name[k] = 0;
		/* Time on the CPU in ns from schedstat (precise); else utime+stime ticks. */
		long long ns = -1;
		snprintf(sp, sizeof sp, "/proc/%d/task/%s/schedstat", thr_pid, de->d_name);
		fd = open(sp, O_RDONLY);
		if (fd >= 0) {
			char sb[128];
			ssize_t m = read(fd, sb, sizeof sb - 1);
			close(fd);
			if (m > 0) {
				sb[m] = 0;
				ns = atoll(sb);
			}
		}
		if (ns < 0) {
			unsigned long long ut = 0, st = 0;
			if (sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
				continue;
			ns = (long long)(ut + st) * (1000000000LL / sysconf(_SC_CLK_TCK));
		}
		int tid = atoi(de->d_name);
		if (!end) {
			if (n_tid0 < MAX_TIDS) {
				tid0[n_tid0] = tid;
				ns0[n_tid0++] = ns;
			}
			continue;
		}
		long long before = 0;
		for (int i = 0; i < n_tid0; i++)
			if (tid0[i] == tid) {
				before = ns0[i];
				break;
			}
		int g = tgroup(name);
		if (g >= 0)
			tg_cpu[g] += ns - before;
	}
	closedir(d);
}

static void usage(void)
{
	fprintf(stderr, "usage: rtpload -f ENDPOINTS [-R ramp_s] [-w warmup_s] [-d duration_s] "
			"[-g drain_ms] [-p NAME=PID]... [-o RESULT] [-Q SIDE] [-F SIDE] [-T PID]\n");
	exit(2);
}

static void send_one(struct ep *e, int idx, int counted)
{
	uint8_t pkt[PKT_LEN];
	uint32_t seq = e->seq++;
	memset(pkt + RTP_HDR, 0xff, PKT_LEN - RTP_HDR); /* u-law silence */
	pkt[0] = 0x80;                                  /* V=2 */
	pkt[1] = 0;                                     /* PT 0 = PCMU */
	pkt[2] = (uint8_t)(seq >> 8);
	pkt[3] = (uint8_t)seq;
	uint32_t rts = htonl(seq * 160u), ssrc = htonl(0x7a5a0000u + (uint32_t)idx);
	memcpy(pkt + 4, &rts, 4);
	memcpy(pkt + 8, &ssrc, 4);
	uint32_t w[3] = {htonl(MAGIC), htonl((uint32_t)idx), htonl(seq)};
	memcpy(pkt + RTP_HDR, w, 12);
	pkt[RTP_HDR + 12] = (uint8_t)counted;
	int64_t now = ts_ns(CLOCK_REALTIME);
	memcpy(pkt + RTP_HDR + 16, &now, 8); /* host order: only this process reads it */
	if (sendto(e->fd, pkt, PKT_LEN, 0, (struct sockaddr *)&e->dst, sizeof e->dst) != PKT_LEN) {
		send_errors++;
		return;
	}
	if (counted)
		e->sent_counted++;
}

#define RX_BATCH 8
static int64_t kernel_ts(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec t;
			memcpy(&t, CMSG_DATA(c), sizeof t);
			return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
		}
	}
	return -1;
}

/* -F: an RTP packet the server itself sent to endpoint ridx. */
static void foreign_account(int ridx, const uint8_t *buf, ssize_t r, struct msghdr *mh)
{
	if (r < RTP_HDR || buf[0] >> 6 != 2) {
		f_bad++;
		return;
	}
	int pt = buf[1] & 0x7f;
	if (pt >= 64 && pt <= 95) { /* RTCP (RFC 5761) */
		f_rtcp++;
		return;
	}
	struct ep *e = &eps[ridx];
	uint16_t seq = (uint16_t)(buf[2] << 8 | buf[3]);
	uint32_t ssrc = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
	int64_t kts = kernel_ts(mh);
	int in_win = kts >= win0_rt && kts < win1_rt && win0_rt > 0;
	if (e->f_have && ssrc != e->f_ssrc) {
		if (in_win)
			e->f_ssrc_changes++;
		e->f_have = 0;
	}
	if (!e->f_have) {
		e->f_have = 1;
		e->f_ssrc = ssrc;
		e->f_seq = seq;
		e->f_kts = kts;
		if (in_win)
			e->f_win++;
		return;
	}
	uint16_t d = (uint16_t)(seq - e->f_seq);
	if (d == 0) {
		e->f_dup++;
		return;
	}
	if (d >= 32768) { /* older than the last one */
		e->f_reorder++;
		if (in_win)
			e->f_win++;
		return;
	}
	if (in_win) {
		e->f_win++;
		if (e->f_kts >= win0_rt) {
			e->f_gaps += d - 1u;
			hist_add(hist_ia, &n_ia, kts - e->f_kts);
		}
	}
	e->f_seq = seq;
	e->f_kts = kts;
}

static void account(int ridx, const uint8_t *buf, ssize_t r, struct msghdr *mh)
{
	uint32_t w[3];
	if (r != PKT_LEN || (memcpy(w, buf + RTP_HDR, 12), ntohl(w[0]) != MAGIC)) {
		if (foreign_mode)
			foreign_account(ridx, buf, r, mh);
		if (r >= RTP_HDR)
			foreign_pkts++;
		else
			bad_pkts++;
		return;
	}
	uint32_t sidx = ntohl(w[1]), seq = ntohl(w[2]);
	if (sidx >= (uint32_t)nep || seq >= max_seq) {
		bad_pkts++;
		return;
	}
	int counted = buf[RTP_HDR + 12] & 1;
	int64_t sent;
	memcpy(&sent, buf + RTP_HDR + 16, 8);
	struct ep *s = &eps[sidx];
	if (s->first_rx < 0)
		s->first_rx = ridx;
	else if (s->first_rx != ridx)
		misrouted++;
	if (s->seen[seq >> 3] & (1u << (seq & 7))) {
		dup_pkts++;
		return;
	}
	s->seen[seq >> 3] |= (uint8_t)(1u << (seq & 7));
	s->recv_all++;
	if (!counted)
		return;
	s->recv_counted++;
	int64_t kts = kernel_ts(mh);
	if (kts > 0)
		hist_add(hist_relay, &n_relay, kts - sent);
	else
		no_tstamp++;
}

/* Read everything queued on endpoint ridx's socket, without waiting. */
static void drain_socket(int ridx)
{
	static uint8_t bufs[RX_BATCH][2048];
	static char cbufs[RX_BATCH][128];
	struct mmsghdr mm[RX_BATCH];
	struct iovec iov[RX_BATCH];
	for (;;) {
		for (int i = 0; i < RX_BATCH; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = sizeof bufs[i];
			memset(&mm[i], 0, sizeof mm[i]);
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
			mm[i].msg_hdr.msg_control = cbufs[i];
			mm[i].msg_hdr.msg_controllen = sizeof cbufs[i];
		}
		int n = recvmmsg(eps[ridx].fd, mm, RX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return; /* EAGAIN (or an ICMP error queued on the socket: ignore) */
		for (int i = 0; i < n; i++)
			account(ridx, bufs[i], mm[i].msg_len, &mm[i].msg_hdr);
		if (n < RX_BATCH)
			return;
	}
}

int main(int argc, char **argv)
{
	const char *file = NULL, *out = NULL;
	double ramp_s = 2, warm_s = 3, dur_s = 20;
	int drain_ms = 500, opt;
	char *pname[MAX_PROCS];
	int ppid[MAX_PROCS], nproc = 0;
	char quiet_side = 0;
	while ((opt = getopt(argc, argv, "f:R:w:d:g:p:o:Q:F:T:h")) != -1) {
		switch (opt) {
		case 'Q': quiet_side = optarg[0]; break;
		case 'T': thr_pid = atoi(optarg); break;
		case 'F': foreign_mode = 1; foreign_side = optarg[0]; break;
		case 'f': file = optarg; break;
		case 'R': ramp_s = atof(optarg); break;
		case 'w': warm_s = atof(optarg); break;
		case 'd': dur_s = atof(optarg); break;
		case 'g': drain_ms = atoi(optarg); break;
		case 'o': out = optarg; break;
		case 'p': {
			char *eq = strchr(optarg, '=');
			if (!eq || nproc >= MAX_PROCS)
				usage();
			*eq = 0;
			pname[nproc] = optarg;
			ppid[nproc++] = atoi(eq + 1);
			break;
		}
		default: usage();
		}
	}
	if (!file || ramp_s < 0 || warm_s < 0 || dur_s <= 0 || dur_s > 600 || ramp_s > 60 ||
	    warm_s > 60 || drain_ms < 0 || drain_ms > 10000)
		usage();

	FILE *f = fopen(file, "r");
	if (!f) {
		perror(file);
		return 2;
	}
	eps = calloc(MAX_EP, sizeof *eps);
	char line[256];
	while (fgets(line, sizeof line, f)) {
		char ip[64], side[8] = "-";
		unsigned lport, rport;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		int k = sscanf(line, "%u %63s %u %7s", &lport, ip, &rport, side);
		if (k < 3 || lport == 0 || lport > 65535 || rport == 0 || rport > 65535) {
			fprintf(stderr, "rtpload: bad line in %s: %s", file, line);
			return 2;
		}
		if (nep >= MAX_EP) {
			fprintf(stderr, "rtpload: too many endpoints\n");
			return 2;
		}
		struct ep *e = &eps[nep];
		e->port = (uint16_t)lport;
		e->dst.sin_family = AF_INET;
		e->dst.sin_port = htons((uint16_t)rport);
		if (inet_pton(AF_INET, ip, &e->dst.sin_addr) != 1) {
			fprintf(stderr, "rtpload: bad address %s\n", ip);
			return 2;
		}
		e->side = side[0];
		e->quiet = quiet_side && side[0] == quiet_side;
		e->first_rx = -1;
		nep++;
	}
	fclose(f);
	if (nep == 0) {
		fprintf(stderr, "rtpload: no endpoints in %s\n", file);
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nep + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)nep + 64 ? rl.rlim_max : (rlim_t)nep + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* Every packet of the whole run has a distinct sequence number per sender. */
	max_seq = (uint32_t)((ramp_s + warm_s + dur_s + 1) * 50) + 100;
	for (int i = 0; i < nep; i++) {
		struct ep *e = &eps[i];
		e->seen = calloc((max_seq + 7) / 8, 1);
		e->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (e->fd < 0) {
			perror("socket");
			return 2;
		}
		int one = 1;
		setsockopt(e->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(e->port)};
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		if (bind(e->fd, (struct sockaddr *)&a, sizeof a) < 0) {
			fprintf(stderr, "rtpload: bind 127.0.0.1:%u: %s\n", e->port, strerror(errno));
			return 2;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	prctl(PR_SET_TIMERSLACK, 10000UL, 0, 0, 0); /* 10 us instead of 50 us */

	/* Schedule: endpoint k sends at t0 + k*PERIOD/nep + m*PERIOD, m = 0, 1, ...
	 * It starts at its first slot after t0 + ramp*k/nep. Right after its send,
	 * the endpoint's own socket is read (without waiting): every socket gets one
	 * packet per 20 ms too, so this costs one recvmmsg per packet and no epoll;
	 * the relay latency comes from the kernel's receive timestamp, so reading
	 * up to 20 ms later changes nothing. */
	const int64_t t0 = ts_ns(CLOCK_MONOTONIC) + 50000000LL;
	const int64_t t_count = t0 + (int64_t)((ramp_s + warm_s) * 1e9);
	const int64_t t_end = t_count + (int64_t)(dur_s * 1e9);
	const int64_t t_stop = t_end + (int64_t)drain_ms * 1000000LL;
	const int64_t ramp_ns = (int64_t)(ramp_s * 1e9);
	{
		int64_t rt_off = ts_ns(CLOCK_REALTIME) - ts_ns(CLOCK_MONOTONIC);
		win0_rt = t_count + rt_off;
		win1_rt = t_end + rt_off;
	}
	int64_t next_m = 0;
	int next_k = 0;
	long long pt0[MAX_PROCS], pt1[MAX_PROCS];
	struct rusage ru0, ru1;
	int64_t wall0 = 0, wall1 = 0, last_sweep = 0;
	int window = 0; /* 0 before, 1 counting, 2 after */

	for (;;) {
		int64_t now = ts_ns(CLOCK_MONOTONIC);
		if (window == 0 && now >= t_count) {
			window = 1;
			wall0 = now;
			getrusage(RUSAGE_SELF, &ru0);
			for (int i = 0; i < nproc; i++)
				pt0[i] = proc_ticks(ppid[i]);
			if (thr_pid > 0)
				thread_ticks(0);
		}
		if (window == 1 && now >= t_end) {
			window = 2;
			wall1 = now;
			getrusage(RUSAGE_SELF, &ru1);
			for (int i = 0; i < nproc; i++)
				pt1[i] = proc_ticks(ppid[i]);
			if (thr_pid > 0)
				thread_ticks(1);
		}
		if (now >= t_stop || stop_now)
			break;
		int64_t due = t0 + next_m * PERIOD_NS + (int64_t)next_k * PERIOD_NS / nep;
		if (due < t_end) {
			if (due > now) {
				/* Sleep through long gaps; a short one (< 100 us, many
				 * endpoints) costs less to wait out than a timer wake-up. */
				if (due - now > 100000) {
					int64_t w = due - 30000;
					struct timespec ts = {w / 1000000000LL, w % 1000000000LL};
					clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
				}
				continue;
			}
			if (due >= t0 + ramp_ns * next_k / nep && !eps[next_k].quiet) {
				int counted = due >= t_count;
				if (counted)
					hist_add(hist_late, &n_late, now - due);
				send_one(&eps[next_k], next_k, counted);
			}
			drain_socket(next_k);
			if (++next_k == nep) {
				next_k = 0;
				next_m++;
			}
			continue;
		}
		/* Sending is over: sweep all sockets every 5 ms until t_stop. */
		if (now - last_sweep >= 5000000LL) {
			for (int i = 0; i < nep; i++)
				drain_socket(i);
			last_sweep = now;
		}
		int64_t wake = now + 5000000LL;
		if (window == 1 && t_end < wake)
			wake = t_end;
		if (t_stop < wake)
			wake = t_stop;
		struct timespec ts = {wake / 1000000000LL, wake % 1000000000LL};
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	for (int i = 0; i < nep; i++)
		drain_socket(i);
	if (window < 2) {
		fprintf(stderr, "rtpload: interrupted before the end of the counted window\n");
		return 2;
	}

	/* Totals. */
	uint64_t sent = 0, recv = 0, lost = 0, senders_lossy = 0, senders_silent = 0;
	uint64_t sentA = 0, lostA = 0, sentB = 0, lostB = 0;
	for (int i = 0; i < nep; i++) {
		struct ep *e = &eps[i];
		uint64_t l = e->sent_counted > e->recv_counted ? e->sent_counted - e->recv_counted : 0;
		sent += e->sent_counted;
		recv += e->recv_counted;
		lost += l;
		if (l)
			senders_lossy++;
		if (e->recv_all == 0)
			senders_silent++;
		if (e->side == 'A' || e->side == 'a') {
			sentA += e->sent_counted;
			lostA += l;
		} else if (e->side == 'B' || e->side == 'b') {
			sentB += e->sent_counted;
			lostB += l;
		}
	}
	double wall = (wall1 - wall0) / 1e9;
	double gen_cpu = ((ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
			  ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) / 1e6);
	long hz = sysconf(_SC_CLK_TCK);

	char res[8192];
	int len = snprintf(res, sizeof res,
		"endpoints=%d sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64 " loss_pct=%.4f"
		" lost_A=%" PRIu64 " sent_A=%" PRIu64 " lost_B=%" PRIu64 " sent_B=%" PRIu64
		" lossy_senders=%" PRIu64 " silent_senders=%" PRIu64 " dup=%" PRIu64 " misrouted=%" PRIu64
		" foreign=%" PRIu64 " bad=%" PRIu64 " send_errors=%" PRIu64 " no_tstamp=%" PRIu64
		" pps=%.0f"
		" relay_p50_us=%.0f relay_p90_us=%.0f relay_p99_us=%.0f relay_p999_us=%.0f relay_max_us=%.0f relay_mean_us=%.1f"
		" late_p50_us=%.0f late_p99_us=%.0f late_max_us=%.0f gen_cpu_pct=%.1f window_s=%.3f",
		nep, sent, recv, lost, sent ? 100.0 * lost / sent : 0.0, lostA, sentA, lostB, sentB,
		senders_lossy, senders_silent, dup_pkts, misrouted, foreign_pkts, bad_pkts, send_errors, no_tstamp,
		wall > 0 ? sent / wall : 0,
		hist_pct(hist_relay, n_relay, 50), hist_pct(hist_relay, n_relay, 90), hist_pct(hist_relay, n_relay, 99),
		hist_pct(hist_relay, n_relay, 99.9), hist_max(hist_relay), hist_mean(hist_relay, n_relay),
		hist_pct(hist_late, n_late, 50), hist_pct(hist_late, n_late, 99), hist_max(hist_late),
		wall > 0 ? 100 * gen_cpu / wall : 0, wall);
	if (foreign_mode) {
		uint64_t rx = 0, gaps = 0, chg = 0, dupf = 0, reo = 0, streams = 0, silent = 0, receivers = 0;
		uint32_t minw = UINT32_MAX, maxw = 0;
		for (int i = 0; i < nep; i++) {
			struct ep *e = &eps[i];
			rx += e->f_win;
			gaps += e->f_gaps;
			chg += e->f_ssrc_changes;
			dupf += e->f_dup;
			reo += e->f_reorder;
			if (e->f_win)
				streams++;
			if (e->side == foreign_side) {
				receivers++;
				if (!e->f_win)
					silent++;
				if (e->f_win < minw)
					minw = e->f_win;
				if (e->f_win > maxw)
					maxw = e->f_win;
			}
		}
		if (!receivers)
			minw = 0;
		len += snprintf(res + len, sizeof res - len,
			" stream_receivers=%" PRIu64 " stream_streams=%" PRIu64 " stream_silent=%" PRIu64 " stream_rx=%" PRIu64
			" stream_pps=%.1f stream_pps_per_stream=%.2f stream_min_pkts=%u stream_max_pkts=%u stream_expected_per_stream=%.0f"
			" stream_missing_seq=%" PRIu64 " stream_ssrc_changes=%" PRIu64 " stream_dup=%" PRIu64 " stream_reordered=%" PRIu64
			" stream_rtcp=%" PRIu64 " stream_ia_p10_us=%.0f stream_ia_p50_us=%.0f stream_ia_p90_us=%.0f stream_ia_p99_us=%.0f stream_ia_p999_us=%.0f stream_ia_max_us=%.0f",
			receivers, streams, silent, rx, wall > 0 ? rx / wall : 0, (wall > 0 && receivers) ? rx / wall / receivers : 0,
			minw, maxw, dur_s * 50, gaps, chg, dupf, reo, f_rtcp,
			hist_pct(hist_ia, n_ia, 10), hist_pct(hist_ia, n_ia, 50), hist_pct(hist_ia, n_ia, 90), hist_pct(hist_ia, n_ia, 99),
			hist_pct(hist_ia, n_ia, 99.9), hist_max(hist_ia));
	}
	for (int i = 0; i < nproc && len < (int)sizeof res - 64; i++) {
		double pct = (pt0[i] >= 0 && pt1[i] >= pt0[i] && wall > 0) ? 100.0 * (pt1[i] - pt0[i]) / hz / wall : -1;
		len += snprintf(res + len, sizeof res - len, " cpu_%s_pct=%.1f", pname[i], pct);
	}
	for (int i = 0; i < n_tg && len < (int)sizeof res - 64; i++) {
		double pct = wall > 0 ? 100.0 * tg_cpu[i] / 1e9 / wall : -1;
		len += snprintf(res + len, sizeof res - len, " thr_%s_pct=%.3f", tg_name[i], pct);
	}
	printf("%s\n", res);
	if (out) {
		FILE *o = fopen(out, "w");
		if (o) {
			fprintf(o, "%s\n", res);
			fclose(o);
		}
	}
	fprintf(stderr,
		"rtpload: %d endpoints, %.1f s counted: sent %" PRIu64 ", lost %" PRIu64 " (%.4f %%), dup %" PRIu64
		", misrouted %" PRIu64 "; relay latency p50 %.0f us p99 %.0f us max %.0f us; send lateness p99 %.0f us;"
		" generator CPU %.0f %%\n",
		nep, wall, sent, lost, sent ? 100.0 * lost / sent : 0.0, dup_pkts, misrouted,
		hist_pct(hist_relay, n_relay, 50), hist_pct(hist_relay, n_relay, 99), hist_max(hist_relay),
		hist_pct(hist_late, n_late, 99), wall > 0 ? 100 * gen_cpu / wall : 0);
	return 0;
}
