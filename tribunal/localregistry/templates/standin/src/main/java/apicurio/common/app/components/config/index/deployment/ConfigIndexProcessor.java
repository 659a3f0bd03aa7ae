/*
 * STAND-IN, built by Tribunal: this file replaces
 * io.apicurio:apicurio-common-app-components-config-index-deployment:0.1.18.Final, the Quarkus
 * deployment module of Apicurio's "config index" extension. Apicurio Registry 2.4.2.Final needs
 * that module when its application is built, but Maven Central does not serve it. Everything
 * else in the registry Tribunal builds is the genuine Apicurio Registry 2.4.2.Final from Maven
 * Central; this one build step is Tribunal's.
 *
 * What it does: at build time, it collects every CDI field injection point annotated both
 * @ConfigProperty and @Dynamic (the registry settings that may be changed at run time, through
 * /apis/registry/v2/admin/config/properties) and registers that list as the
 * DynamicConfigPropertyList bean, through the recorder of the genuine runtime module
 * (io.apicurio:apicurio-common-app-components-config-index:0.1.18.Final, from Maven Central).
 */
package apicurio.common.app.components.config.index.deployment;

import java.util.ArrayList;
import java.util.List;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.jandex.AnnotationInstance;
import org.jboss.jandex.AnnotationValue;
import org.jboss.jandex.DotName;
import org.jboss.jandex.Type;

import apicurio.common.app.components.config.index.DynamicPropertiesInfoRecorder;
import io.apicurio.common.apps.config.Dynamic;
import io.apicurio.common.apps.config.DynamicConfigPropertyDef;
import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import io.quarkus.arc.deployment.BeanDiscoveryFinishedBuildItem;
import io.quarkus.arc.deployment.SyntheticBeanBuildItem;
import io.quarkus.arc.processor.InjectionPointInfo;
import io.quarkus.deployment.annotations.BuildProducer;
import io.quarkus.deployment.annotations.BuildStep;
import io.quarkus.deployment.annotations.ExecutionTime;
import io.quarkus.deployment.annotations.Record;
import io.quarkus.deployment.builditem.FeatureBuildItem;
import io.quarkus.runtime.RuntimeValue;

/** Collects every field injection point annotated @ConfigProperty + @Dynamic into a DynamicConfigPropertyList bean. */
public class ConfigIndexProcessor {

    private static final DotName CONFIG_PROPERTY = DotName.createSimple(ConfigProperty.class.getName());
    private static final DotName DYNAMIC = DotName.createSimple(Dynamic.class.getName());

    @BuildStep
    FeatureBuildItem feature() {
        return new FeatureBuildItem("apicurio-config-index");
    }

    @BuildStep
    @Record(ExecutionTime.RUNTIME_INIT)
    void dynamicPropertyList(DynamicPropertiesInfoRecorder recorder, BeanDiscoveryFinishedBuildItem beans,
            BuildProducer<SyntheticBeanBuildItem> synthetic) throws Exception {
        List<DynamicConfigPropertyDef> defs = new ArrayList<>();
        for (InjectionPointInfo ip : beans.getInjectionPoints()) {
            AnnotationInstance cp = ip.getRequiredQualifier(CONFIG_PROPERTY);
            if (cp == null || !ip.isField() || ip.getTarget().asField().annotation(DYNAMIC) == null) {
                continue;
            }
            AnnotationInstance dyn = ip.getTarget().asField().annotation(DYNAMIC);
            String name = cp.value("name").asString();
            AnnotationValue dv = cp.value("defaultValue");
            if (dv == null) {
                throw new IllegalStateException("@Dynamic config property " + name + " has no default value");
            }
            Type valueType = ip.getRequiredType().asParameterizedType().arguments().get(0);
            Class<?> cls = Class.forName(valueType.name().toString(), false,
                    Thread.currentThread().getContextClassLoader());
            DynamicConfigPropertyDef def = new DynamicConfigPropertyDef(name, cls, dv.asString());
            if (dyn.value("label") != null) def.setLabel(dyn.value("label").asString());
            if (dyn.value("description") != null) def.setDescription(dyn.value("description").asString());
            if (dyn.value("requires") != null) def.setRequires(dyn.value("requires").asStringArray());
            defs.add(def);
        }
        RuntimeValue<DynamicConfigPropertyList> value = recorder.initializePropertiesInfo(defs);
        synthetic.produce(SyntheticBeanBuildItem.configure(DynamicConfigPropertyList.class)
                .runtimeValue(value).unremovable().setRuntimeInit().done());
    }
}
