/* A fleetstream MQTT device in C with libmosquitto (docs/devices/mqtt.md).
 *
 * It connects with its certificate over TLS as MQTT 5, client id "<tenant_id>.<device_id>", with a last will
 * that marks it offline; says it is online; subscribes to its commands and rejections; publishes a reading
 * every INTERVAL_S seconds; answers each command "succeeded" on commands/ack; prints every rejection notice.
 * Stops after RUN_S seconds.
 *
 *   env: MQTT_HOST, MQTT_PORT (default 18883), TENANT_ID, DEVICE_ID, CERT_DIR (ca.crt, device.crt, device.key),
 *        INTERVAL_S (default 5), RUN_S (default 60)
 *
 * Build: cc -o mqtt_device mqtt_device.c -lmosquitto     (Debian: apt-get install libmosquitto-dev)
 * Run:   ./mqtt_device
 *
 * A real device would parse JSON with a library (cJSON, jsmn); json_string() below reads just the two string
 * members a command needs, so the example has no dependency besides libmosquitto.
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char topic_telemetry[512], topic_status[512], topic_commands[512], topic_ack[512], topic_rejections[512];
static atomic_int unacked;     /* QoS 1 messages the broker has not acknowledged yet */
static atomic_bool connected;

static const char *env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    if (v == NULL && fallback == NULL) {
        fprintf(stderr, "%s is not set\n", name);
        exit(2);
    }
    return v ? v : fallback;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The string member `key` of the JSON object `doc` into `out`; 0 if absent, not a plain string (escapes are
 * refused rather than decoded) or longer than `n` - 1. */
static int json_string(const char *doc, const char *key, char *out, size_t n)
{
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *p = strstr(doc, quoted);
    if (p == NULL)
        return 0;
    p += strlen(quoted);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != ':')
        return 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != '"')
        return 0;
    size_t i = 0;
    for (; *p != '"'; p++) {
        if (*p == '\0' || *p == '\\' || (unsigned char)*p < 0x20 || i + 1 >= n)
            return 0;
        out[i++] = *p;
    }
    out[i] = '\0';
    return 1;
}

static void sleep_s(double s)
{
    struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

static void publish(struct mosquitto *mosq, const char *topic, const char *payload, bool retain)
{
    int mid;
    atomic_fetch_add(&unacked, 1);
    int rc = mosquitto_publish_v5(mosq, &mid, topic, (int)strlen(payload), payload, 1, retain, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        atomic_fetch_sub(&unacked, 1);
        fprintf(stderr, "publish to %s failed: %s\n", topic, mosquitto_strerror(rc));
    }
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)obj, (void)flags, (void)props;
    if (rc != 0) { /* e.g. 0x87 (135): wrong client id, revoked certificate, suspended device */
        printf("refused by the broker: %s (%d)\n", mosquitto_reason_string(rc), rc);
        fflush(stdout);
        return;
    }
    publish(mosq, topic_status, "online", true);
    mosquitto_subscribe_v5(mosq, NULL, topic_commands, 1, 0, NULL);
    mosquitto_subscribe_v5(mosq, NULL, topic_rejections, 1, 0, NULL);
    atomic_store(&connected, true);
    printf("connected\n");
    fflush(stdout);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason_code, const mosquitto_property *props)
{
    (void)mosq, (void)obj, (void)mid, (void)props;
    /* PUBACK: the broker has the message. Whether the platform stored it is told on the rejections topic. */
    if (reason_code >= 0x80)
        fprintf(stderr, "PUBACK %s (0x%02x)\n", mosquitto_reason_string(reason_code), reason_code);
    atomic_fetch_sub(&unacked, 1);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)obj, (void)props;
    char doc[65536];
    if (msg->payloadlen <= 0 || (size_t)msg->payloadlen >= sizeof doc)
        return;
    memcpy(doc, msg->payload, (size_t)msg->payloadlen);
    doc[msg->payloadlen] = '\0';
    if (strcmp(msg->topic, topic_commands) == 0) {
        /* {"command_id", "name", "params", "attempt", "expires_at"}: do it, then answer with the same id */
        char id[128], name[128], ack[512];
        if (!json_string(doc, "command_id", id, sizeof id) || !json_string(doc, "name", name, sizeof name)) {
            fprintf(stderr, "a command without command_id or name: %s\n", doc);
            return;
        }
        printf("command %s\n", name);
        fflush(stdout);
        snprintf(ack, sizeof ack, "{\"command_id\": \"%s\", \"status\": \"succeeded\", \"result\": {\"done\": \"%s\"}}",
                 id, name);
        publish(mosq, topic_ack, ack, false);
    } else if (strcmp(msg->topic, topic_rejections) == 0) {
        char code[128] = "?";
        json_string(doc, "reason_code", code, sizeof code);
        printf("rejected: %s: %s\n", code, doc);
        fflush(stdout);
    }
}

int main(void)
{
    const char *host = env("MQTT_HOST", NULL), *tenant = env("TENANT_ID", NULL), *device = env("DEVICE_ID", NULL);
    const char *certs = env("CERT_DIR", NULL);
    int port = atoi(env("MQTT_PORT", "18883"));
    double interval_s = atof(env("INTERVAL_S", "5")), run_s = atof(env("RUN_S", "60"));

    char client_id[300], ca[1024], crt[1024], key[1024];
    snprintf(client_id, sizeof client_id, "%s.%s", tenant, device); /* must equal the certificate's CN */
    snprintf(topic_telemetry, sizeof topic_telemetry, "fs/%s/%s/telemetry", tenant, device);
    snprintf(topic_status, sizeof topic_status, "fs/%s/%s/status", tenant, device);
    snprintf(topic_commands, sizeof topic_commands, "fs/%s/%s/commands", tenant, device);
    snprintf(topic_ack, sizeof topic_ack, "fs/%s/%s/commands/ack", tenant, device);
    snprintf(topic_rejections, sizeof topic_rejections, "fs/%s/%s/rejections", tenant, device);
    snprintf(ca, sizeof ca, "%s/ca.crt", certs);
    snprintf(crt, sizeof crt, "%s/device.crt", certs);
    snprintf(key, sizeof key, "%s/device.key", certs);

    mosquitto_lib_init();
    /* clean_session false + a Session Expiry Interval: commands queued while the device is briefly away are kept */
    struct mosquitto *mosq = mosquitto_new(client_id, false, NULL);
    if (mosq == NULL) {
        fprintf(stderr, "mosquitto_new failed\n");
        return 1;
    }
    mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    int rc = mosquitto_tls_set(mosq, ca, NULL, crt, key, NULL);
    if (rc == MOSQ_ERR_SUCCESS) /* the broker publishes it if we vanish */
        rc = mosquitto_will_set_v5(mosq, topic_status, 7, "offline", 1, true, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "TLS or last will: %s\n", mosquitto_strerror(rc));
        return 1;
    }
    mosquitto_connect_v5_callback_set(mosq, on_connect);
    mosquitto_publish_v5_callback_set(mosq, on_publish);
    mosquitto_message_v5_callback_set(mosq, on_message);

    mosquitto_property *props = NULL;
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 3600);
    rc = mosquitto_connect_bind_v5(mosq, host, port, 30, NULL, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "connect to %s:%d: %s\n", host, port, mosquitto_strerror(rc));
        return 1;
    }
    mosquitto_loop_start(mosq); /* network I/O and callbacks on libmosquitto's thread; it reconnects by itself */

    long long start = now_ms(), deadline = start + (long long)(run_s * 1000);
    srand((unsigned)now_ms());
    while (now_ms() < deadline) {
        if (atomic_load(&connected)) {
            char reading[256];
            /* QoS 1: the broker's PUBACK means it has the message; refusals arrive on the rejections topic */
            snprintf(reading, sizeof reading, "{\"ts\": %lld, \"values\": {\"temperature\": %.2f, \"uptime_s\": %lld}}",
                     now_ms(), 20.0 + (rand() % 500) / 100.0, (now_ms() - start) / 1000);
            publish(mosq, topic_telemetry, reading, false);
        }
        sleep_s(interval_s);
    }
    publish(mosq, topic_status, "offline", true);
    for (int i = 0; i < 100 && atomic_load(&unacked) > 0; i++) /* up to 5 s for the last PUBACKs */
        sleep_s(0.05);
    mosquitto_disconnect_v5(mosq, 0, NULL);
    mosquitto_loop_stop(mosq, false);
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    return 0;
}
