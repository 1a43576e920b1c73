// Apache Kafka's own Java producer with its default partitioner: sends one record per key given on the
// command line to each topic of a comma-separated list and prints "<topic> <partition> <key>" for each as
// the broker acknowledged it (tests/contract/test_partitioning.py).
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class KeyedProducer {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("acks", "all");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            List<String> keys = new ArrayList<>();
            for (String topic : args[1].split(",")) {
                for (int i = 2; i < args.length; i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, args[i], "java")));
                    keys.add(args[i]);
                }
            }
            for (int i = 0; i < sent.size(); i++) {
                RecordMetadata m = sent.get(i).get();
                System.out.println(m.topic() + " " + m.partition() + " " + keys.get(i));
            }
        }
    }
}
