/*
 * fleetstream_access: a Mosquitto 2.0 plugin (API v5) that ties every MQTT session to its certificate.
 *
 * Why (adr/0100): with `use_identity_as_username` Mosquitto 2.0.11 runs no authentication plugin at all, so
 * neither the dynamic-security plugin's per-client `clientid` nor its `disabled` flag is looked at on CONNECT:
 * any device could connect with any client id (and so close any session, the connector's included), and a
 * revoked certificate or a suspended device still completed CONNECT. Without that option the broker does call
 * the plugins' basic-auth callback, where this plugin derives the identity from the verified certificate:
 *
 *   - a device certificate (issued by "fleetstream tenant <T> CA", CN "<T>.<D>") must connect with client id
 *     "<T>.<D>" and may only touch fs/<T>/<D> and below (subscribe, publish, receive);
 *   - a platform certificate (issued directly by the platform root, plugin_opt_platform_issuer) may use any
 *     client id: device ids can never be platform ids, so no device reaches a platform session;
 *   - a certificate serial, a device or a whole tenant on the deny list is refused at CONNECT (0x87 under
 *     MQTT 5, 5 under 3.1.1) and its live sessions are closed when it is denied.
 *   - Sparkplug B (adr/0156): the same device identity is an edge node whose group id is its tenant and whose
 *     edge node id is its device id. It may publish NBIRTH/NDEATH/NDATA at spBv1.0/<T>/<type>/<D> and
 *     DBIRTH/DDEATH/DDATA at spBv1.0/<T>/<type>/<D>/<device>, subscribe to and receive NCMD at
 *     spBv1.0/<T>/NCMD/<D> and DCMD at spBv1.0/<T>/DCMD/<D>/<device|+|#>, and read the hosts'
 *     spBv1.0/STATE/<host>; nothing else under spBv1.0. This plugin decides those alone (no dynsec role).
 *   - a registered device (the known set, adr/0171) may use its own namespace fs/<T>/<D>; a device
 *     identity this plugin does not know is left to the dynamic-security plugin (loaded after this one),
 *     which knows devices provisioned before the known set existed and denies any other.
 * Why the known set (adr/0171): dynamic security rewrites its whole JSON file after every command, so adding
 * devices one role and one client at a time costs O(devices known) each, O(n^2) for a fleet (adr/0035). The
 * rule "<T>.<D> may use fs/<T>/<D>" is structural; the broker only has to know which devices exist, one hash
 * entry each, kept in an append-only journal.
 *
 * The deny list changes at run time over $CONTROL/fleetstream-access/v1, one command per line:
 *   "<correlation> deny|allow tenant|device|serial <value>"   (serial: lower-case hex, as the CA records it)
 * answered on $CONTROL/fleetstream-access/v1/response with "<correlation> ok <sessions closed>" or
 * "<correlation> error <why>". Only plugin_opt_admin (the control plane's certificate CN) may use the topic.
 * The list is kept in plugin_opt_state_file (one "<kind> <value>" per line) and read at start.
 * The known set changes on the same topic: "<correlation> register|unregister device <T>.<D>" (unregister
 * also closes the device's sessions), journalled in plugin_opt_known_file as "+ <T>.<D>" / "- <T>.<D>" lines
 * (appended once per control message; compacted when read at start).
 *
 * Not exercised: a SIGHUP reload. Mosquitto then re-runs authentication for every session it knows, offline
 * persistent ones included, which present no certificate and would be refused; the stack never sends one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define CONTROL_TOPIC "$CONTROL/fleetstream-access/v1"
#define RESPONSE_TOPIC CONTROL_TOPIC "/response"
#define TENANT_CA_PREFIX "fleetstream tenant "
#define TENANT_CA_SUFFIX " CA"
#define NS_PREFIX "fs/"
#define SP_ROOT "spBv1.0/"
#define SP_STATE SP_ROOT "STATE/"

/* ---- a small string-keyed hash table (chained); values are owned by the caller ------------------------- */
struct entry {
	char *key;
	void *value;
	struct entry *next;
};

struct table {
	struct entry **buckets;
	size_t size;
	size_t count;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	while(*s){
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static int table_init(struct table *t, size_t size)
{
	t->buckets = calloc(size, sizeof(struct entry *));
	t->size = size;
	t->count = 0;
	return t->buckets ? 0 : -1;
}

static struct entry *table_find(struct table *t, const char *key)
{
	struct entry *e;
	for(e = t->buckets[hash_str(key) % t->size]; e; e = e->next){
		if(!strcmp(e->key, key)) return e;
	}
	return NULL;
}

static struct entry *table_put(struct table *t, const char *key, void *value)
{
	struct entry *e = table_find(t, key);
	size_t b;
	if(e){
		e->value = value;
		return e;
	}
	e = calloc(1, sizeof(*e));
	if(!e) return NULL;
	e->key = strdup(key);
	if(!e->key){
		free(e);
		return NULL;
	}
	e->value = value;
	b = hash_str(key) % t->size;
	e->next = t->buckets[b];
	t->buckets[b] = e;
	t->count++;
	return e;
}

/* Removes the entry and returns its value (for the caller to free). */
static void *table_remove(struct table *t, const char *key)
{
	struct entry **pp = &t->buckets[hash_str(key) % t->size];
	while(*pp){
		struct entry *e = *pp;
		if(!strcmp(e->key, key)){
			void *v = e->value;
			*pp = e->next;
			free(e->key);
			free(e);
			t->count--;
			return v;
		}
		pp = &e->next;
	}
	return NULL;
}

/* ---- state ----------------------------------------------------------------------------------------------- */
struct session {
	struct mosquitto *client; /* the context that authenticated: a takeover's old context must not remove it */
	char *username;           /* the certificate CN */
	char *serial;             /* lower-case hex */
	bool device;
};

static mosquitto_plugin_id_t *plg_id;
static char *state_file;
static char *platform_issuer;
static char *admin_identity;
static char *known_file;
static struct table denied_tenants, denied_devices, denied_serials;
static struct table known_devices; /* "<T>.<D>" of every registered device (adr/0171) */
static struct table sessions; /* client id -> struct session */

static void session_free(struct session *s)
{
	if(!s) return;
	free(s->username);
	free(s->serial);
	free(s);
}

static const char *kinds[] = {"tenant", "device", "serial"};

static struct table *deny_table(const char *kind)
{
	if(!strcmp(kind, "tenant")) return &denied_tenants;
	if(!strcmp(kind, "device")) return &denied_devices;
	if(!strcmp(kind, "serial")) return &denied_serials;
	return NULL;
}

static int state_save(void)
{
	char tmp[4096];
	FILE *f;
	size_t k, b;
	struct entry *e;

	if(!state_file) return 0;
	snprintf(tmp, sizeof(tmp), "%s.new", state_file);
	f = fopen(tmp, "w");
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetstream_access: cannot write %s: %s", tmp, strerror(errno));
		return -1;
	}
	for(k = 0; k < 3; k++){
		struct table *t = deny_table(kinds[k]);
		for(b = 0; b < t->size; b++){
			for(e = t->buckets[b]; e; e = e->next) fprintf(f, "%s %s\n", kinds[k], e->key);
		}
	}
	if(fclose(f) != 0 || rename(tmp, state_file) != 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetstream_access: cannot replace %s: %s", state_file, strerror(errno));
		return -1;
	}
	return 0;
}

static void state_load(void)
{
	char line[1024], kind[16], value[1000];
	FILE *f;
	int n = 0;

	if(!state_file) return;
	f = fopen(state_file, "r");
	if(!f) return; /* nothing denied yet */
	while(fgets(line, sizeof(line), f)){
		struct table *t;
		if(sscanf(line, "%15s %999s", kind, value) != 2) continue;
		t = deny_table(kind);
		if(t && table_put(t, value, NULL)) n++;
	}
	fclose(f);
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetstream_access: %d denied identities loaded from %s", n, state_file);
}

/* Replays the known-devices journal, then rewrites it compacted when it held removals or repeats. */
static void known_load(void)
{
	char line[1024], op[4], value[1000], tmp[4096];
	FILE *f;
	size_t lines = 0, b;
	struct entry *e;

	if(!known_file) return;
	f = fopen(known_file, "r");
	if(!f) return;
	while(fgets(line, sizeof(line), f)){
		if(sscanf(line, "%3s %999s", op, value) != 2) continue;
		lines++;
		if(!strcmp(op, "+")) table_put(&known_devices, value, NULL);
		else if(!strcmp(op, "-")) table_remove(&known_devices, value);
	}
	fclose(f);
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetstream_access: %lu known devices loaded from %s",
			(unsigned long)known_devices.count, known_file);
	if(lines == known_devices.count) return;
	snprintf(tmp, sizeof(tmp), "%s.new", known_file);
	f = fopen(tmp, "w");
	if(!f) return;
	for(b = 0; b < known_devices.size; b++){
		for(e = known_devices.buckets[b]; e; e = e->next) fprintf(f, "+ %s\n", e->key);
	}
	if(fclose(f) != 0 || rename(tmp, known_file) != 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetstream_access: cannot compact %s: %s", known_file, strerror(errno));
	}
}

static int known_append(const char *journal, size_t len)
{
	FILE *f;
	if(!known_file || !len) return 0;
	f = fopen(known_file, "a");
	if(f){
		bool written = fwrite(journal, 1, len, f) == len;
		if(fclose(f) == 0 && written) return 0;
	}
	mosquitto_log_printf(MOSQ_LOG_ERR, "fleetstream_access: cannot append to %s: %s", known_file, strerror(errno));
	return -1;
}

/* ---- identity from the certificate ---------------------------------------------------------------------- */
static char *name_cn(X509_NAME *name)
{
	int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	X509_NAME_ENTRY *ne;
	ASN1_STRING *data;
	const unsigned char *bytes;
	int len;
	char *out;

	if(i < 0) return NULL;
	ne = X509_NAME_get_entry(name, i);
	data = ne ? X509_NAME_ENTRY_get_data(ne) : NULL;
	if(!data) return NULL;
	bytes = ASN1_STRING_get0_data(data);
	len = ASN1_STRING_length(data);
	if(len <= 0 || memchr(bytes, 0, (size_t)len)) return NULL; /* no empty CN, no embedded NUL */
	out = malloc((size_t)len + 1);
	if(!out) return NULL;
	memcpy(out, bytes, (size_t)len);
	out[len] = '\0';
	return out;
}

static char *serial_hex(X509 *cert)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex, *out, *p;
	if(!bn) return NULL;
	hex = BN_bn2hex(bn);
	BN_free(bn);
	if(!hex) return NULL;
	p = hex;
	while(*p == '0' && p[1]) p++; /* Python's format(serial, "x"): no leading zeros, lower case */
	out = strdup(p);
	OPENSSL_free(hex);
	for(p = out; p && *p; p++){
		if(*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
	}
	return out;
}

/* The tenant a device certificate's issuer speaks for ("fleetstream tenant <T> CA"), or NULL. */
static char *issuer_tenant(const char *issuer_cn)
{
	size_t n = strlen(issuer_cn), pre = strlen(TENANT_CA_PREFIX), suf = strlen(TENANT_CA_SUFFIX);
	char *out;
	if(n <= pre + suf || strncmp(issuer_cn, TENANT_CA_PREFIX, pre) || strcmp(issuer_cn + n - suf, TENANT_CA_SUFFIX)){
		return NULL;
	}
	out = malloc(n - pre - suf + 1);
	if(!out) return NULL;
	memcpy(out, issuer_cn + pre, n - pre - suf);
	out[n - pre - suf] = '\0';
	return out;
}

static bool is_device_username(const char *username)
{
	/* Device identities are "<tenant>.<device>"; platform identities never contain a dot (the platform
	 * names both, adr/0003), so an identity's kind is known from the username alone, e.g. for sessions that
	 * are offline while messages are queued for them. */
	return strchr(username, '.') != NULL;
}

/* A topic or filter is inside a device's namespace when it is fs/<T>/<D> or below it. */
static bool in_namespace(const char *username, const char *topic)
{
	const char *dot = strchr(username, '.');
	size_t tlen, dlen;
	const char *p = topic;

	if(!dot) return false;
	tlen = (size_t)(dot - username);
	dlen = strlen(dot + 1);
	if(strncmp(p, NS_PREFIX, strlen(NS_PREFIX))) return false;
	p += strlen(NS_PREFIX);
	if(strncmp(p, username, tlen) || p[tlen] != '/') return false;
	p += tlen + 1;
	if(strncmp(p, dot + 1, dlen)) return false;
	p += dlen;
	return *p == '\0' || *p == '/';
}

/* Whether segment [s, s+n) of a topic equals str. */
static bool seg_is(const char *s, size_t n, const char *str)
{
	return strlen(str) == n && !strncmp(s, str, n);
}

/* A Sparkplug topic or filter's verdict for a device identity: 1 allowed, 0 refused, -1 not Sparkplug.
 * spBv1.0/<group>/<type>/<edge node>[/<device>]: group must be the identity's tenant and edge node its device
 * id, both compared as whole segments (a device id may hold dots, never a slash). */
static int sparkplug_access(const char *username, const char *topic, int access)
{
	const char *dot = strchr(username, '.');
	const char *seg[5];
	size_t len[5];
	int n = 0;
	const char *p;
	bool reading = access == MOSQ_ACL_READ || access == MOSQ_ACL_SUBSCRIBE || access == MOSQ_ACL_UNSUBSCRIBE;

	if(strncmp(topic, SP_ROOT, strlen(SP_ROOT))) return -1;
	if(!strncmp(topic, SP_STATE, strlen(SP_STATE))){
		return reading ? 1 : 0; /* edge nodes watch the primary host's STATE; only platform hosts write it */
	}
	p = topic + strlen(SP_ROOT);
	while(n < 5){
		const char *slash = strchr(p, '/');
		seg[n] = p;
		len[n] = slash ? (size_t)(slash - p) : strlen(p);
		n++;
		if(!slash) break;
		p = slash + 1;
	}
	if(n < 3 || n > 4 || strchr(p, '/')) return 0;
	if(!dot || len[0] != (size_t)(dot - username) || strncmp(seg[0], username, len[0])) return 0;
	if(!seg_is(seg[2], len[2], dot + 1)) return 0;
	if(n == 4 && len[3] == 0) return 0;
	if(access == MOSQ_ACL_WRITE){
		if(n == 3) return seg_is(seg[1], len[1], "NBIRTH") || seg_is(seg[1], len[1], "NDEATH")
			|| seg_is(seg[1], len[1], "NDATA");
		return seg_is(seg[1], len[1], "DBIRTH") || seg_is(seg[1], len[1], "DDEATH")
			|| seg_is(seg[1], len[1], "DDATA");
	}
	if(!reading) return 0;
	return n == 3 ? seg_is(seg[1], len[1], "NCMD") : seg_is(seg[1], len[1], "DCMD");
}

static bool denied(const char *tenant, const char *username, const char *serial)
{
	return (tenant && table_find(&denied_tenants, tenant))
		|| (username && table_find(&denied_devices, username))
		|| (serial && table_find(&denied_serials, serial));
}

static int basic_auth_callback(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	X509 *cert;
	char *cn = NULL, *issuer = NULL, *tenant = NULL, *serial = NULL;
	const char *clientid = mosquitto_client_id(ed->client);
	const char *why = NULL;
	bool device = false;
	int rc = MOSQ_ERR_AUTH;

	(void)event;
	(void)userdata;
	cert = mosquitto_client_certificate(ed->client);
	if(!cert){
		why = "no client certificate";
		goto done;
	}
	cn = name_cn(X509_get_subject_name(cert));
	issuer = name_cn(X509_get_issuer_name(cert));
	serial = serial_hex(cert);
	if(!cn || !issuer || !serial){
		why = "certificate without a usable CN, issuer CN or serial";
		goto done;
	}
	if(platform_issuer && !strcmp(issuer, platform_issuer)){
		device = false;
	}else{
		size_t tl;
		tenant = issuer_tenant(issuer);
		tl = tenant ? strlen(tenant) : 0;
		if(!tenant || strncmp(cn, tenant, tl) || cn[tl] != '.' || cn[tl + 1] == '\0'){
			why = "certificate CN does not name a device of its issuing tenant";
			goto done;
		}
		device = true;
		if(!clientid || strcmp(clientid, cn)){
			why = "client id is not the certificate's identity";
			goto done;
		}
	}
	if(denied(tenant, cn, serial)){
		why = "certificate, device or tenant is denied";
		goto done;
	}
	if(mosquitto_set_username(ed->client, cn) != MOSQ_ERR_SUCCESS){
		why = "could not set the username";
		goto done;
	}
	if(clientid){
		struct session *s = calloc(1, sizeof(*s));
		if(s){
			s->client = ed->client;
			s->username = strdup(cn);
			s->serial = strdup(serial);
			s->device = device;
			session_free(table_remove(&sessions, clientid));
			if(!table_put(&sessions, clientid, s)) session_free(s);
		}
	}
	rc = MOSQ_ERR_SUCCESS;
done:
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "fleetstream_access: refused client id '%s' (certificate '%s', serial %s): %s",
				clientid ? clientid : "", cn ? cn : "", serial ? serial : "", why);
	}
	if(cert) X509_free(cert);
	free(cn);
	free(issuer);
	free(tenant);
	free(serial);
	return rc;
}

static int disconnect_callback(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	const char *clientid = mosquitto_client_id(ed->client);
	struct entry *e;

	(void)event;
	(void)userdata;
	if(!clientid) return MOSQ_ERR_SUCCESS;
	e = table_find(&sessions, clientid);
	if(e && ((struct session *)e->value)->client == ed->client){
		session_free(table_remove(&sessions, clientid));
	}
	return MOSQ_ERR_SUCCESS;
}

static int acl_check_callback(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	int sparkplug;

	(void)event;
	(void)userdata;
	if(!username) return MOSQ_ERR_ACL_DENIED;
	if(!strncmp(ed->topic, CONTROL_TOPIC, strlen(CONTROL_TOPIC))){
		return (admin_identity && !strcmp(username, admin_identity)) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	if(!is_device_username(username)) return MOSQ_ERR_PLUGIN_DEFER; /* platform: dynamic security decides */
	sparkplug = sparkplug_access(username, ed->topic, ed->access);
	if(sparkplug == 0) return MOSQ_ERR_ACL_DENIED;
	if(sparkplug < 0 && !in_namespace(username, ed->topic)) return MOSQ_ERR_ACL_DENIED;
	{
		const char *dot = strchr(username, '.');
		char tenant[128];
		size_t tl = (size_t)(dot - username);
		if(tl < sizeof(tenant)){
			memcpy(tenant, username, tl);
			tenant[tl] = '\0';
			if(denied(tenant, username, NULL)) return MOSQ_ERR_ACL_DENIED;
		}else if(sparkplug > 0){
			return MOSQ_ERR_ACL_DENIED; /* a tenant id this long is never issued; no deny check, no grant */
		}
	}
	/* Sparkplug: the topic names only what the certificate proves (adr/0156), so no per-device role is kept */
	if(sparkplug > 0) return MOSQ_ERR_SUCCESS;
	/* inside its namespace: a registered device may (adr/0171); any other is dynamic security's to decide */
	if(table_find(&known_devices, username)) return MOSQ_ERR_SUCCESS;
	return MOSQ_ERR_PLUGIN_DEFER;
}

/* Closes the sessions a new deny entry covers; returns how many. */
static int kick(const char *kind, const char *value)
{
	char **ids;
	size_t n = 0, b, i, cap = sessions.count + 1, vlen = strlen(value);
	struct entry *e;

	ids = calloc(cap, sizeof(char *));
	if(!ids) return 0;
	/* collect first: each kick runs the disconnect callback, which changes the table */
	for(b = 0; b < sessions.size && n < cap; b++){
		for(e = sessions.buckets[b]; e && n < cap; e = e->next){
			struct session *s = e->value;
			bool hit = false;
			if(!strcmp(kind, "serial")) hit = !strcmp(s->serial, value);
			else if(!strcmp(kind, "device")) hit = !strcmp(s->username, value);
			else if(!strcmp(kind, "tenant")) hit = s->device && !strncmp(s->username, value, vlen) && s->username[vlen] == '.';
			if(hit) ids[n++] = strdup(e->key);
		}
	}
	for(i = 0; i < n; i++){
		if(ids[i]){
			mosquitto_kick_client_by_clientid(ids[i], false);
			free(ids[i]);
		}
	}
	free(ids);
	if(!strcmp(kind, "device")){
		/* a device's sessions are all named by its identity; catches one this plugin did not record */
		mosquitto_kick_client_by_username(value, false);
	}
	return (int)n;
}

static void respond(const char *text)
{
	mosquitto_broker_publish_copy(NULL, RESPONSE_TOPIC, (int)strlen(text), text, 0, false, NULL);
}

static int control_callback(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	char *body, *line, *save = NULL;
	char *out, *journal;
	size_t out_len = 0, out_cap, journal_len = 0;
	bool changed = false;

	(void)event;
	(void)userdata;
	if(!username || !admin_identity || strcmp(username, admin_identity)) return MOSQ_ERR_ACL_DENIED;
	body = malloc(ed->payloadlen + 1);
	out_cap = 128 * ((size_t)ed->payloadlen / 8 + 2); /* answers to malformed lines beyond this are dropped */
	out = malloc(out_cap);
	journal = malloc(ed->payloadlen + 1); /* each journal line is shorter than its command line */
	if(!body || !out || !journal){
		free(body);
		free(out);
		free(journal);
		return MOSQ_ERR_NOMEM;
	}
	memcpy(body, ed->payload, ed->payloadlen);
	body[ed->payloadlen] = '\0';
	out[0] = '\0';
	for(line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		char corr[65], verb[16], kind[8], value[300];
		struct table *t;
		int closed = 0;
		char result[128];
		bool known_verb = false;

		if(sscanf(line, "%64s %15s %7s %299s", corr, verb, kind, value) == 4){
			known_verb = !strcmp(verb, "register") || !strcmp(verb, "unregister");
		}
		if(known_verb && (strcmp(kind, "device") || !is_device_username(value))){
			snprintf(result, sizeof(result), "%s error bad command\n", corr);
		}else if(known_verb && !strcmp(verb, "register")){
			if(!table_find(&known_devices, value)){
				if(!table_put(&known_devices, value, NULL)){
					snprintf(result, sizeof(result), "%s error out of memory\n", corr);
					goto answer;
				}
				journal_len += (size_t)sprintf(journal + journal_len, "+ %s\n", value);
			}
			snprintf(result, sizeof(result), "%s ok 0\n", corr);
		}else if(known_verb){
			if(table_find(&known_devices, value)){
				table_remove(&known_devices, value);
				journal_len += (size_t)sprintf(journal + journal_len, "- %s\n", value);
			}
			closed = kick("device", value); /* as dynamic security's disableClient did */
			snprintf(result, sizeof(result), "%s ok %d\n", corr, closed);
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "fleetstream_access: unregistered device %s, %d session(s) closed", value, closed);
		}else if(sscanf(line, "%64s %15s %7s %299s", corr, verb, kind, value) != 4 || !(t = deny_table(kind))
				|| (strcmp(verb, "deny") && strcmp(verb, "allow"))){
			snprintf(result, sizeof(result), "%.64s error bad command\n", sscanf(line, "%64s", corr) == 1 ? corr : "-");
		}else if(!strcmp(verb, "deny")){
			if(!table_find(t, value)) changed = true;
			if(!table_put(t, value, NULL)){
				snprintf(result, sizeof(result), "%s error out of memory\n", corr);
			}else{
				closed = kick(kind, value);
				snprintf(result, sizeof(result), "%s ok %d\n", corr, closed);
				mosquitto_log_printf(MOSQ_LOG_NOTICE, "fleetstream_access: denied %s %s, %d session(s) closed", kind, value, closed);
			}
		}else{
			if(table_find(t, value)){
				table_remove(t, value);
				changed = true;
			}
			snprintf(result, sizeof(result), "%s ok 0\n", corr);
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "fleetstream_access: allowed %s %s", kind, value);
		}
answer:
		if(out_len + strlen(result) + 1 < out_cap){
			memcpy(out + out_len, result, strlen(result) + 1);
			out_len += strlen(result);
		}
	}
	if(changed) state_save();
	known_append(journal, journal_len);
	respond(out);
	free(body);
	free(out);
	free(journal);
	return MOSQ_ERR_SUCCESS;
}

/* ---- plugin entry points ----------------------------------------------------------------------------- */
int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;
	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *options, int option_count)
{
	int i;

	(void)user_data;
	for(i = 0; i < option_count; i++){
		if(!strcasecmp(options[i].key, "state_file")) state_file = strdup(options[i].value);
		else if(!strcasecmp(options[i].key, "platform_issuer")) platform_issuer = strdup(options[i].value);
		else if(!strcasecmp(options[i].key, "admin")) admin_identity = strdup(options[i].value);
		else if(!strcasecmp(options[i].key, "known_file")) known_file = strdup(options[i].value);
	}
	if(!platform_issuer || !admin_identity){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetstream_access: plugin_opt_platform_issuer and plugin_opt_admin are required");
		return MOSQ_ERR_INVAL;
	}
	if(table_init(&denied_tenants, 1024) || table_init(&denied_devices, 4096) || table_init(&denied_serials, 4096)
			|| table_init(&sessions, 65536) || table_init(&known_devices, 262144)){
		return MOSQ_ERR_NOMEM;
	}
	state_load();
	known_load();
	plg_id = identifier;
	mosquitto_callback_register(plg_id, MOSQ_EVT_BASIC_AUTH, basic_auth_callback, NULL, NULL);
	mosquitto_callback_register(plg_id, MOSQ_EVT_ACL_CHECK, acl_check_callback, NULL, NULL);
	mosquitto_callback_register(plg_id, MOSQ_EVT_DISCONNECT, disconnect_callback, NULL, NULL);
	mosquitto_callback_register(plg_id, MOSQ_EVT_CONTROL, control_callback, CONTROL_TOPIC, NULL);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *options, int option_count)
{
	(void)user_data;
	(void)options;
	(void)option_count;
	if(plg_id){
		mosquitto_callback_unregister(plg_id, MOSQ_EVT_BASIC_AUTH, basic_auth_callback, NULL);
		mosquitto_callback_unregister(plg_id, MOSQ_EVT_ACL_CHECK, acl_check_callback, NULL);
		mosquitto_callback_unregister(plg_id, MOSQ_EVT_DISCONNECT, disconnect_callback, NULL);
		mosquitto_callback_unregister(plg_id, MOSQ_EVT_CONTROL, control_callback, CONTROL_TOPIC);
	}
	return MOSQ_ERR_SUCCESS;
}
