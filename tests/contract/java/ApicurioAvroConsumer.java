// A JVM decoder fleetstream did not write: Apache Kafka's Java consumer with Apicurio Registry's own
// AvroKafkaDeserializer, which reads the schema id after the magic byte and fetches the writer schema from
// the registry. Reads a topic from the beginning and prints, as one Avro-JSON line each, the first <count>
// records whose tenant_id is <tenant> (tests/contract/test_jvm_decoder.py).
//   java -cp ... ApicurioAvroConsumer.java <bootstrap> <registry v3 url> <topic> <tenant> <count> <timeout s>
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ApicurioAvroConsumer {
    public static void main(String[] args) {
        String topic = args[2], tenant = args[3];
        int count = Integer.parseInt(args[4]);
        long deadline = System.currentTimeMillis() + 1000L * Long.parseLong(args[5]);
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", "io.apicurio.registry.serde.avro.AvroKafkaDeserializer");
        p.put("apicurio.registry.url", args[1]);
        try (KafkaConsumer<String, GenericRecord> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            int found = 0;
            while (found < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, GenericRecord> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.value() != null && tenant.equals(r.value().get("tenant_id").toString()) && found < count) {
                        System.out.println(r.value());
                        found++;
                    }
                }
            }
            System.exit(found == count ? 0 : 3);
        }
    }
}
